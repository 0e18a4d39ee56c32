-- A worker takes the conversations of one partition lane that are due, leasing each one so that a
-- conversation is only ever delivered by one worker at a time (that is what keeps a thread in order).
-- KEYS: ready   ARGV: now_ms, worker, lease_ms, max, lease_key_prefix
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local taken = {}
for _, cid in ipairs(due) do
  local lease = ARGV[5] .. cid
  if redis.call('SET', lease, ARGV[2], 'NX', 'PX', lease_ms) then
    taken[#taken + 1] = cid
    -- If this worker dies, the conversation is due again once its lease has expired.
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, cid)
  else
    local ttl = redis.call('PTTL', lease)
    if ttl < 0 then ttl = lease_ms end
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, cid)
  end
end
return taken
