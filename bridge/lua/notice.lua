-- Queue a Slack notice for an agent (see lib.lua `notice`) about the current handover.
-- KEYS: out_slack, ready_slack, stats, conv   ARGV: cid, now_ms, kind, data json
local hid = redis.call('HGET', KEYS[4], 'hid') or '0'
notice(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), ARGV[3], hid, ARGV[4])
return 1
