-- A human replied in a handover thread: queue it for the owner's reply endpoint (once per Slack
-- event_id), count it as activity, and let the first replying agent claim an unclaimed handover.
-- The claim is queued before the message, so the owner hears "handover_claimed" (and can mute the bot)
-- before the agent's first words reach the user.
-- Its Slack ts is mapped to the reply's id and time (`sent`), so that an edit or a deletion of it
-- can name the reply (agent_edit.lua).
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines, seen, sent
-- ARGV: now_ms, cid, thread_ts, agent_id, message json, dedupe_ms, claim_on_reply ('1'|'0'), slack ts
-- Returns {status, first_response_after_ms}: status 1 queued (2: queued, and this reply claimed the
-- handover), 0 duplicate, -1 not an open handover thread
local k = handover_keys()
local now, cid = tonumber(ARGV[1]), ARGV[2]
local state = open_state(k.conv, ARGV[3])
if not state then return {-1, 0} end
if not redis.call('SET', KEYS[9], '1', 'NX', 'PX', ARGV[6]) then return {0, 0} end

local c = redis.call('HMGET', k.conv, 'skill_id', 'client_id', 'user_id', 'platform', 'lang', 'hid',
  'first_response_at', 'opened_at')
local status = 1
if state == 'open' and ARGV[7] == '1' then
  claim(k, cid, now, ARGV[4], '', '1')
  status = 2
end
local message = cjson.decode(ARGV[5])
message.type = 'agent_message'
message.skill_id, message.client_id, message.user_id = c[1] or '', c[2] or '', c[3] or ''
message.platform, message.lang, message.thread_ts = c[4] or '', c[5] or '', ARGV[3]
enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'agent_message', 'h', c[6] or '0',
  'e', cjson.encode(message), 't', now)
redis.call('ZADD', k.open, now, cid)
local ttl = redis.call('PTTL', k.conv)
local line = {t = now, agent = ARGV[4], m = message.slack_text or '', id = message.id}
if type(message.files) == 'table' and #message.files > 0 then
  line.f = {}
  for i, file in ipairs(message.files) do line.f[i] = file.name end
end
keep_line(k.lines, k.conv, cjson.encode(line), ttl)
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[10], ARGV[8], message.id .. ' ' .. now)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[10], ttl) end
end

local first_after = 0
if not c[7] then
  redis.call('HSET', k.conv, 'first_response_at', now)
  first_after = now - tonumber(c[8] or now)
end
return {status, first_after}
