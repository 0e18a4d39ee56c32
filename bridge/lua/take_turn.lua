-- A channel's token and the choice of the conversation whose turn it is (lib.lua: take_turn), in
-- the channel's slot. The worker then leases the chosen conversation (Store.take_lease).
-- KEYS: bucket, queue   ARGV: now_ms, per_second, burst, cid|'', score, have_token ('1'|'0'), skip...
-- Returns {wait_ms, chosen cid|'', chosen score, rank}
local skip = {}
for i = 7, #ARGV do skip[#skip + 1] = ARGV[i] end
return take_turn(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5],
  ARGV[6] == '1', skip)
