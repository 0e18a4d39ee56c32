-- Lease one given conversation (whose turn a worker took in its channel) and read it as fetch.lua
-- would; nothing when another worker holds it. Like claim_due.lua, the conversation is not due
-- again until the lease has expired.
-- KEYS: conv, out, lease, ready   ARGV: worker, lease_ms, now_ms, cid, fetch_limit
-- Returns {1, flat conv hash, entries} or {0}
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
redis.call('ZADD', KEYS[4], 'XX', tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[4])
return {1, redis.call('HGETALL', KEYS[1]), redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[5])}
