-- Before a Slack post, in one call where one script may touch both the conversation's keys and the
-- channel's bucket (standalone Redis; in a cluster they live in different slots and Store.begin_post
-- makes two calls): the lease check, a token, and the in-flight marker once a token was taken.
-- KEYS: conv, lease, bucket   ARGV: worker, lease_ms, lane, marker, now_ms, per_second, burst
-- Returns {held (1|0), ms to wait before a token (0: taken, marker written)}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0, 0} end
local wait = take_token(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
mark_inflight(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], wait == 0 and ARGV[4] or '')
return {1, wait}
