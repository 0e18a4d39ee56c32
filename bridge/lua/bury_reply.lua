-- An agent's reply the owner's endpoint refused for good: dead-lettered like any entry (bury.lua),
-- and, atomically, its Slack message gets a warning reaction and its author an ephemeral message
-- whose reply_retry button names this dead letter (the notice's `dead` field, filled in here).
-- KEYS: out_reply, dead, stats, conv, out_slack, ready_slack
-- ARGV: cid, reason, now_ms, dead_maxlen, id, reaction json|'', ephemeral json|'', hid
-- Returns the dead letter's id ('' when the entry was gone already)
local cid, now = ARGV[1], tonumber(ARGV[3])
local dead_id = bury_one(KEYS[1], KEYS[2], 'reply', cid, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if not dead_id then return '' end
redis.call('HINCRBY', KEYS[3], 'reply', -1)
redis.call('HDEL', KEYS[4], 'inflight:reply', 'attempts:reply')
if ARGV[6] ~= '' then notice(KEYS[5], KEYS[6], KEYS[3], cid, now, 'reaction', ARGV[8], ARGV[6]) end
if ARGV[7] ~= '' then
  local data = cjson.decode(ARGV[7])
  data.dead = dead_id
  notice(KEYS[5], KEYS[6], KEYS[3], cid, now, 'ephemeral', ARGV[8], cjson.encode(data))
end
return dead_id
