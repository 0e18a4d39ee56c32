-- A posting token for one channel (lib.lua: take_token).
-- KEYS: bucket   ARGV: now_ms, per_second, burst
return take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
