-- Last step before a post: only the lease holder may post, and a post gets a whole lease to finish.
-- Writes the in-flight marker ("<first id> <last id> <started ms>") and renews the lease, or does
-- nothing and returns 0 when the lease has passed to another worker (ours expired while we stalled).
-- KEYS: conv, lease   ARGV: worker, lease_ms, lane, marker ('' clears it)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'inflight:' .. ARGV[3])  -- the post did not start after all
else
  redis.call('HSET', KEYS[1], 'inflight:' .. ARGV[3], ARGV[4])
end
return 1
