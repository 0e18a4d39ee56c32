-- A handover left its channel (resolved, transferred, forgotten): its placement and count go.
-- KEYS: placed   ARGV: cid, hid ('' = whichever handover of the conversation is placed), open_prefix
-- Returns the channel it left, or '' when it was not placed (already left, or its root never posted)
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return '' end
local channel, placed_hid = string.match(current, '^(%S+) (%S+)$')
if ARGV[2] ~= '' and placed_hid ~= ARGV[2] then return '' end
redis.call('HDEL', KEYS[1], ARGV[1])
if channel then redis.call('ZREM', ARGV[3] .. channel, ARGV[1]) end
return channel or ''
