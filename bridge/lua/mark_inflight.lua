-- The in-flight marker and the lease renewal before a post (lib.lua: mark_inflight).
-- KEYS: conv, lease   ARGV: worker, lease_ms, lane, marker ('' clears it)
return mark_inflight(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
