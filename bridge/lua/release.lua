-- A worker hands a conversation back: the lease goes, and the conversation stays due (at `due_ms`)
-- only while its outbox still holds entries. Atomic with record.lua's append, so no wake-up is lost.
-- KEYS: lease, out, ready   ARGV: worker, cid, due_ms
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('XLEN', KEYS[2]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  return 1
end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[2])
return 0
