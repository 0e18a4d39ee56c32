-- Token bucket shared by every replica: how long to wait (ms) before posting to this channel.
-- A 429's Retry-After pauses the whole channel through `paused_until`.
-- KEYS: bucket   ARGV: now_ms, per_second, burst
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'paused_until')
local paused = tonumber(b[3] or '0')
if paused > now then return paused - now end
local tokens = tonumber(b[1] or ARGV[3])
local at = tonumber(b[2] or ARGV[1])
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
return wait
