-- Before a Slack post, in one call where one script may touch both the conversation's keys and the
-- channel's (standalone Redis; in a cluster Store.begin_turn makes take_turn.lua's call, then
-- mark_inflight.lua's): the lease check, the channel's turn, and the in-flight marker when the turn
-- is this conversation's own.
-- KEYS: conv, lease, bucket, queue
-- ARGV: worker, lease_ms, lane, marker, now_ms, per_second, burst, cid, score
-- Returns {held (1|0), wait_ms, chosen cid|'', chosen score, rank}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0, 0, '', '0', 0} end
local turn = take_turn(KEYS[3], KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8],
  ARGV[9], false, {})
if turn[2] == ARGV[8] then mark_inflight(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
return {1, turn[1], turn[2], turn[3], turn[4]}
