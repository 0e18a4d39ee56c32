-- The transfer modal's submit: the open handover moves to another route. A new handover id opens a
-- new thread in the target route's channel (root + opening history, as record.lua opens one); lines
-- and agent replies follow the new thread only from now on (the old thread_ts no longer matches).
-- The old thread's closing line and "Transferred" root wait for the new root's ts, to link to it:
-- commit.lua queues them (transfer_landed in lib.lua) once the new root is posted.
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines, timers, hist
-- ARGV: now_ms, cid, thread_ts, agent_id, agent_name, to_route, to_pool (json list of channels),
--       to_mention ('' = none),
--       from_link ('' = unknown), team_url ('' = unknown), shown_on_open
-- Returns {1, new hid, old hid} transferred, {-1} not an open handover of this thread,
--         {-2} already on that route
local k = handover_keys()
local now, cid, thread_ts = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if not open_state(k.conv, thread_ts) then return {-1} end
local old = cjson.decode(redis.call('HGET', k.conv, 'header') or '{}')
if (old.route or '') == ARGV[6] then return {-2} end
local from_channel = redis.call('HGET', k.conv, 'thread_channel') or ''
local hid = redis.call('HINCRBY', k.conv, 'hid', 1)
local header = cjson.decode(cjson.encode(old))
header.hid, header.route, header.status = hid, ARGV[6], 'open'
header.pool = cjson.decode(ARGV[7])  -- delivery places the new root on one of them, as for an opening
header.channel = header.pool[1]
header.mention = ARGV[8] ~= '' and ARGV[8] or nil
header.opened_at, header.status_at, header.thread_ts = now, now, nil
header.agent_id, header.agent_name, header.note, header.outside_hours = nil, nil, nil, nil
header.sla_breached, header.reopens, header.reopened_at = nil, nil, nil
header.transfer = {from_hid = old.hid, from_route = old.route or '', from_channel = from_channel,
  from_ts = thread_ts, from_link = ARGV[9], team_url = ARGV[10], agent_id = ARGV[4], agent_name = ARGV[5]}
local encoded = cjson.encode(header)
redis.call('HDEL', k.conv, 'thread_ts', 'thread_channel', 'agent_id', 'agent_name', 'claimed_at',
  'first_response_at', unpack(SLA_FIELDS))
redis.call('HSET', k.conv, 'state', 'open', 'header', encoded, 'opened_at', now, 'moved_header', cjson.encode(old))
redis.call('XADD', k.out_slack, '*', 'k', 'root', 'h', hid, 'e', encoded, 't', now)
local n = 1
local shown, held = tonumber(ARGV[11]), redis.call('LLEN', KEYS[10])
local lines = (shown > 0 and held > 0) and redis.call('LRANGE', KEYS[10], -shown, -1) or {}
if #lines > 0 then  -- the opening history, as record.lua queues it: one entry, one post
  redis.call('XADD', k.out_slack, '*', 'k', 'hist', 'h', hid, 't', now,
    'e', '{"older":' .. (held - #lines) .. ',"lines":[' .. table.concat(lines, ',') .. ']}')
  n = n + 1
end
redis.call('ZADD', k.ready_slack, 'NX', now, cid)
redis.call('HINCRBY', k.stats, 'slack', n)
redis.call('ZADD', k.open, now, cid)
redis.call('ZADD', KEYS[9], now, cid)
return {1, hid, old.hid or 0}
