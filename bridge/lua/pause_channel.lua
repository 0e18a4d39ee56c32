-- Slack said 429: nobody posts to this channel until Retry-After has passed.
-- KEYS: bucket   ARGV: until_ms, now_ms
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'paused_until', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) - tonumber(ARGV[2]) + 60000)
end
return 1
