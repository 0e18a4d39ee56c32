-- The webhook hot path, in one round trip: dedupe, conversation fields, history, handover claim,
-- and the Slack outbox append, all atomic.
-- KEYS: conv, hist, out_slack, ready_slack, open, dedupe, stats, lines, timers, out_file, ready_file
-- ARGV (RecordArgs in bridge/store.py, in this order): now_ms, dedupe_ms, hist_max, ttl_ms, cid,
--       skill_id, client_id, user_id, lang, platform, muted ('1'|'0'|''), entry json|'',
--       header json|'' (a handover should open), shown_on_open, line_chars_on_open, opening_bytes
-- Returns {recorded (0 = duplicate), queued, opened, hid}
local conv, hist, out, ready, open, dedupe, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = tonumber(ARGV[1])
local cid = ARGV[5]
if tonumber(ARGV[2]) > 0 and not redis.call('SET', dedupe, '1', 'NX', 'PX', ARGV[2]) then
  -- A write even here: WAIT after this script must cover the first recording of this body, and
  -- WAIT only counts what this connection wrote.
  redis.call('PEXPIRE', dedupe, ARGV[2])
  return {0, 0, 0, 0}
end

-- One HSET for every field this event knows (each command is also an AOF record).
local fields = {'skill_id', ARGV[6], 'client_id', ARGV[7], 'last_seen', now}
for i, name in ipairs({'user_id', 'lang', 'platform', 'muted'}) do
  if ARGV[7 + i] ~= '' then
    fields[#fields + 1] = name
    fields[#fields + 1] = ARGV[7 + i]
  end
end
redis.call('HSET', conv, unpack(fields))

local entry = ARGV[12]
if entry ~= '' then
  local keep = tonumber(ARGV[3])
  if redis.call('RPUSH', hist, entry) > keep then redis.call('LTRIM', hist, -keep, -1) end
  redis.call('PEXPIRE', hist, ARGV[4])
end
redis.call('PEXPIRE', conv, ARGV[4])

local current = redis.call('HMGET', conv, 'state', 'hid')
local state = current[1]
local hid = tonumber(current[2] or '0')
local queued, opened = 0, 0
if state == 'open' or state == 'claimed' then
  redis.call('ZADD', open, now, cid)
  if entry ~= '' then
    enqueue(out, ready, stats, 'slack', cid, now, 'k', 'line', 'h', hid, 'e', entry, 't', now,
      'c', state == 'claimed' and '1' or '0')
    keep_line(KEYS[8], conv, entry, ARGV[4])
    queued = 1
  end
elseif ARGV[13] ~= '' then
  hid = redis.call('HINCRBY', conv, 'hid', 1)
  local header = cjson.decode(ARGV[13])
  local known = redis.call('HMGET', conv, 'user_id', 'lang', 'platform', 'muted')
  if (header.user_id or '') == '' then header.user_id = known[1] or '' end
  if (header.lang or '') == '' then header.lang = known[2] or '' end
  if (header.platform or '') == '' then header.platform = known[3] or '' end
  header.muted = known[4] == '1'
  header.hid = hid
  header.opened_at = now
  header.status = 'open'
  local encoded = cjson.encode(header)
  redis.call('HDEL', conv, 'thread_ts', 'thread_channel', 'agent_id', 'agent_name', 'claimed_at',
    'first_response_at', 'lines_cut')
  redis.call('DEL', KEYS[8])
  redis.call('HSET', conv, 'state', 'open', 'header', encoded, 'opened_at', now)
  redis.call('XADD', out, '*', 'k', 'root', 'h', hid, 'e', encoded, 't', now)
  local n = 1
  local shown = tonumber(ARGV[14])
  local held = redis.call('LLEN', hist)
  if held > 0 then
    local lines = shown > 0 and redis.call('LRANGE', hist, -shown, -1) or {}
    if #lines > 0 then
      for _, past in ipairs(lines) do
        keep_line(KEYS[8], conv, past)  -- the transcript starts with the history shown at open
      end
      redis.call('PEXPIRE', KEYS[8], ARGV[4])
      -- The opening history, ONE entry whatever its length (opening.py renders it as one post).
      redis.call('XADD', out, '*', 'k', 'hist', 'h', hid, 't', now,
        'e', '{"older":' .. (held - #lines) .. ',"lines":[' .. table.concat(lines, ',') .. ']}')
      n = n + 1
    end
    -- Everything held, for the transcript file: its own lane, so it never holds the thread's lines
    -- back; that lane uploads it only when the opening post leaves something out (opening.py), which
    -- a short history surely does not (older exchanges, or long lines, or a large total may).
    local size, longest = 0, 0
    for _, past in ipairs(lines) do
      size, longest = size + #past, math.max(longest, #past)
    end
    if held > #lines or longest > tonumber(ARGV[15]) or size > tonumber(ARGV[16]) then
      local all = redis.call('LRANGE', hist, 0, -1)
      enqueue(KEYS[10], KEYS[11], stats, 'file', cid, now, 'k', 'transcript', 'h', hid, 't', now,
        'e', '{"shown":' .. #lines .. ',"all":[' .. table.concat(all, ',') .. ']}')
    end
  end
  redis.call('ZADD', ready, 'NX', now, cid)
  redis.call('HINCRBY', stats, 'slack', n)
  redis.call('ZADD', open, now, cid)
  redis.call('ZADD', KEYS[9], now, cid)  -- the desk's timers look at it at once (SLA, Home)
  queued, opened = 1, 1
end
return {1, queued, opened, hid}
