-- Put one dead letter back at the end of its conversation's outbox and make it due now.
-- KEYS: dead, out, ready, stats   ARGV: dead_id, cid, lane, now_ms
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local fields, kept = found[1][2], {}
local skip = {lane = true, cid = true, reason = true, orig = true, at = true, channel = true}
for i = 1, #fields, 2 do
  if not skip[fields[i]] then
    kept[#kept + 1] = fields[i]
    kept[#kept + 1] = fields[i + 1]
  end
end
enqueue(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[2], tonumber(ARGV[4]), unpack(kept))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
