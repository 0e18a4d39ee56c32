-- Move entries that can never be delivered (permanent error) to the partition's dead-letter stream,
-- keeping every field so `bridge outbox replay` can put them back exactly.
-- KEYS: out, dead, stats, conv   ARGV: lane, cid, reason, now_ms, dead_maxlen, channel ('' unknown), ids...
local moved = 0
for i = 7, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'lane', ARGV[1], 'cid', ARGV[2],
      'reason', ARGV[3], 'orig', ARGV[i], 'at', ARGV[4], 'channel', ARGV[6], unpack(found[1][2]))
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
redis.call('HINCRBY', KEYS[3], ARGV[1], -moved)
redis.call('HDEL', KEYS[4], 'inflight:' .. ARGV[1], 'attempts:' .. ARGV[1])
return moved
