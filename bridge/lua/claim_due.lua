-- A worker takes the conversations of one partition lane that are due, leasing each one so that a
-- conversation is only ever delivered by one worker at a time (that is what keeps a thread in order).
-- With fetch > 0 it also returns what fetch.lua would for each conversation taken, sparing the
-- worker that round trip. (Lease, conv and out keys are built from their partition's prefixes:
-- one slot, as the declared key.)
-- KEYS: ready   ARGV: now_ms, worker, lease_ms, max, lease_key_prefix, fetch, conv_prefix, out_prefix
-- Returns {cid, ...}, or with fetch > 0 {{cid, flat conv hash, entries}, ...}
local now, lease_ms, fetch = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[6] or '0')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local taken = {}
for _, cid in ipairs(due) do
  local lease = ARGV[5] .. cid
  if redis.call('SET', lease, ARGV[2], 'NX', 'PX', lease_ms) then
    if fetch > 0 then
      taken[#taken + 1] = {cid, redis.call('HGETALL', ARGV[7] .. cid),
        redis.call('XRANGE', ARGV[8] .. cid, '-', '+', 'COUNT', fetch)}
    else
      taken[#taken + 1] = cid
    end
    -- If this worker dies, the conversation is due again once its lease has expired.
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, cid)
  else
    local ttl = redis.call('PTTL', lease)
    if ttl < 0 then ttl = lease_ms end
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, cid)
  end
end
return taken
