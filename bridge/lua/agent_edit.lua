-- An agent edited or deleted one of their relayed replies: tell the owner, through the reply outbox
-- (in order with the rest), naming the reply's id as agent_message gave it. An edit counts only
-- within the edit window after the reply was relayed; the transcript line follows (new text, or gone).
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines, seen, sent
-- ARGV: now_ms, cid, thread_ts, agent_id, slack ts, 'edited'|'deleted', new slack text, window_ms,
--       dedupe_ms
-- Returns {status, reply id}: 1 queued, 0 duplicate event, -1 not an open handover thread,
--   -2 not a relayed reply, -3 edit after the window
local k = handover_keys()
local now, cid, kind = tonumber(ARGV[1]), ARGV[2], ARGV[6]
if not open_state(k.conv, ARGV[3]) then return {-1, ''} end
local sent = redis.call('HGET', KEYS[10], ARGV[5])
if not sent then return {-2, ''} end
local id, at = string.match(sent, '^(.*) (%d+)$')
if not redis.call('SET', KEYS[9], '1', 'NX', 'PX', ARGV[9]) then return {0, id} end
if kind == 'edited' and now - tonumber(at) > tonumber(ARGV[8]) then return {-3, id} end

local c = redis.call('HMGET', k.conv, 'skill_id', 'client_id', 'user_id', 'platform', 'lang', 'hid')
local body = {type = 'agent_message_' .. kind, id = id, skill_id = c[1] or '', client_id = c[2] or '',
  user_id = c[3] or '', platform = c[4] or '', lang = c[5] or '', thread_ts = ARGV[3],
  agent = {slack_user_id = ARGV[4], name = ''}, at_ms = now}
if kind == 'edited' then body.slack_text = ARGV[7] else redis.call('HDEL', KEYS[10], ARGV[5]) end
enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'agent_message_' .. kind,
  'h', c[6] or '0', 'e', cjson.encode(body), 't', now)
redis.call('ZADD', k.open, now, cid)

-- The transcript keeps the reply's last words (newest lines first: an edit is usually recent).
local lines = redis.call('LRANGE', k.lines, 0, -1)
for i = #lines, 1, -1 do
  local line = cjson.decode(lines[i])
  if line.id == id then
    if kind == 'edited' then
      line.m = ARGV[7]
      redis.call('LSET', k.lines, i - 1, cjson.encode(line))
    else
      redis.call('LSET', k.lines, i - 1, '')
      redis.call('LREM', k.lines, 1, '')
    end
    break
  end
end
return {1, id}
