-- Shared helpers, prepended to every script by store.py (Redis scripts cannot call each other).
-- Every key a script touches belongs to one partition ({p} hash tag), or to one channel ({<channel>}:
-- its bucket and queue), so it runs on one cluster slot; begin_turn.lua alone touches both, and Store
-- runs it on standalone Redis only.

-- Append one entry to a lane's outbox stream and make the conversation due for a worker.
local function enqueue(out, ready, stats, lane, cid, now, ...)
  redis.call('XADD', out, '*', ...)
  redis.call('ZADD', ready, 'NX', now, cid)
  redis.call('HINCRBY', stats, lane, 1)
end

-- A Slack call the bridge owes an agent about their message (a receipt reaction, an ephemeral
-- explanation): a slack-lane entry of kind `kind` ("reaction" | "ephemeral") of handover `hid`, so
-- it goes to that handover's thread, paced with the channel's posts, never holding up the reply lane.
local function notice(out_slack, ready_slack, stats, cid, now, kind, hid, data)
  enqueue(out_slack, ready_slack, stats, 'slack', cid, now, 'k', kind, 'h', hid, 'e', data, 't', now)
end

-- Move one outbox entry to the partition's dead letters, keeping every field so `bridge outbox
-- replay` can put it back exactly (as bury.lua does). Returns the dead letter's id, or nil when the
-- entry is gone.
local function bury_one(out, dead, lane, cid, reason, now, maxlen, id)
  local found = redis.call('XRANGE', out, id, id)
  if #found == 0 then return nil end
  local dead_id = redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', 'lane', lane, 'cid', cid,
    'reason', reason, 'orig', id, 'at', now, unpack(found[1][2]))
  redis.call('XDEL', out, id)
  return dead_id
end

-- Token bucket shared by every replica: how long to wait (ms) before posting to this channel (0: a
-- token was taken). A 429's Retry-After pauses the whole channel through `paused_until`.
-- Tokens in the bucket now (nil while a 429 pauses the channel, with the ms left of the pause).
local function tokens_now(bucket, now, rate, burst)
  local b = redis.call('HMGET', bucket, 'tokens', 'at', 'paused_until')
  local paused = tonumber(b[3] or '0')
  if paused > now then return nil, paused - now end
  local tokens = tonumber(b[1] or burst)
  local at = tonumber(b[2] or now)
  return math.min(burst, tokens + (now - at) * rate / 1000), 0
end

local function take_token(bucket, now, rate, burst)
  local tokens, paused = tokens_now(bucket, now, rate, burst)
  if not tokens then return paused end
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) * 1000 / rate)
  end
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 60000)
  return wait
end

-- One token back (a turn taken for a conversation that could not use it), never above the burst.
local function give_token(bucket, burst)
  local tokens = tonumber(redis.call('HGET', bucket, 'tokens') or burst)
  redis.call('HSET', bucket, 'tokens', tostring(math.min(burst, tokens + 1)))
end

-- Fair pacing: the channel's token and the choice of thread are one decision. `queue` holds the
-- conversations waiting for this channel, scored by their oldest waiting entry (opening entries
-- score far lower: they go first). `cid` (if not '') joins or updates its place with `score`; then,
-- when a token is free (or `have` one already), the oldest waiting conversation not in `skip` is
-- taken out of the queue: its turn. Returns {ms to wait (0: a turn was taken), chosen cid or '',
-- its score, cid's rank in the queue (when no turn: how many turns come before its own)}.
local function take_turn(bucket, queue, now, rate, burst, cid, score, have, skip)
  if cid ~= '' then
    redis.call('ZADD', queue, score, cid)
    -- Enough tokens for every conversation before this one and for this one: none of them waits
    -- for another's post, so this one takes its own turn (no handing on while the channel is not
    -- saturated).
    local rank = redis.call('ZRANK', queue, cid)
    local tokens = tokens_now(bucket, now, rate, burst)
    if not have and tokens and tokens >= rank + 1 then
      take_token(bucket, now, rate, burst)
      redis.call('ZREM', queue, cid)
      return {0, cid, score, 0}
    end
  end
  local skipped = {}
  for _, id in ipairs(skip) do skipped[id] = true end
  local head, head_score
  local found = redis.call('ZRANGE', queue, 0, #skip, 'WITHSCORES')
  for i = 1, #found, 2 do
    if not skipped[found[i]] then
      head, head_score = found[i], found[i + 1]
      break
    end
  end
  if not head then
    if have then give_token(bucket, burst) end
    return {0, '', '0', 0}
  end
  if not have then
    local wait = take_token(bucket, now, rate, burst)
    if wait > 0 then
      local rank = 0
      if cid ~= '' then rank = redis.call('ZRANK', queue, cid) or 0 end
      return {wait, '', '0', rank}
    end
  end
  redis.call('ZREM', queue, head)
  return {0, head, head_score, 0}
end

-- Last step before a post: only the lease holder may post, and a post gets a whole lease to finish.
-- Writes the in-flight marker ("<first id> <last id> <started ms>", '' clears it) and renews the
-- lease, or does nothing and returns 0 when the lease has passed to another worker.
local function mark_inflight(conv, lease, worker, lease_ms, lane, marker)
  if redis.call('GET', lease) ~= worker then return 0 end
  redis.call('PEXPIRE', lease, lease_ms)
  if marker == '' then
    redis.call('HDEL', conv, 'inflight:' .. lane)  -- the post did not start after all
  else
    redis.call('HSET', conv, 'inflight:' .. lane, marker)
  end
  return 1
end

-- A lifecycle notification for the owner's reply endpoint, built from the conversation hash.
local function lifecycle(conv, kind, now, agent_id, agent_name, thread_ts)
  local c = redis.call('HMGET', conv, 'skill_id', 'client_id', 'user_id', 'platform', 'lang', 'hid')
  local agent = cjson.null
  if agent_id ~= '' then agent = {slack_user_id = agent_id, name = agent_name} end
  return cjson.encode({
    type = kind, skill_id = c[1] or '', client_id = c[2] or '', user_id = c[3] or '',
    platform = c[4] or '', lang = c[5] or '', agent = agent, thread_ts = thread_ts, at_ms = now,
    hid = tonumber(c[6] or '0'),
  })
end

-- The KEYS layout the handover scripts share (store.Keys.handover_keys), by name.
local function handover_keys()
  return {conv = KEYS[1], out_slack = KEYS[2], ready_slack = KEYS[3], out_reply = KEYS[4],
    ready_reply = KEYS[5], stats = KEYS[6], open = KEYS[7], lines = KEYS[8]}
end

-- The handover's lines, for handover_resolved's transcript (transcript.py reads them): JSON history
-- entries, and {"t", "agent", "m", "f"} for agents' replies. Capped: past the cap the oldest go, and
-- the conversation remembers that its transcript lost lines. A new handover starts them afresh.
local TRANSCRIPT_MAX_LINES = 2000
local function keep_line(lines, conv, line, ttl_ms)
  if redis.call('RPUSH', lines, line) > TRANSCRIPT_MAX_LINES then
    redis.call('LTRIM', lines, -TRANSCRIPT_MAX_LINES, -1)
    redis.call('HSET', conv, 'lines_cut', '1')
  end
  if ttl_ms and tonumber(ttl_ms) > 0 then redis.call('PEXPIRE', lines, ttl_ms) end
end

-- The handover state when one is open (or claimed) and, given a thread ts, lives in that thread.
local function open_state(conv, thread_ts)
  local state = redis.call('HGET', conv, 'state')
  if state ~= 'open' and state ~= 'claimed' then return nil end
  if thread_ts ~= '' and redis.call('HGET', conv, 'thread_ts') ~= thread_ts then return nil end
  return state
end

-- Root header (JSON) of the current handover with its status fields replaced.
local function header_with(conv, status, agent_id, agent_name, now)
  local header = cjson.decode(redis.call('HGET', conv, 'header') or '{}')
  header.status = status
  if agent_id ~= '' then
    header.agent_id = agent_id
    header.agent_name = agent_name
  end
  header.status_at = now
  return header
end

-- Record `agent` as the one handling the handover: root updated, a line in the thread, owner notified.
-- keys: conv, out_slack, ready_slack, out_reply, ready_reply, stats
local function claim(k, cid, now, agent_id, agent_name, replies)
  redis.call('HSET', k.conv, 'state', 'claimed', 'agent_id', agent_id, 'agent_name', agent_name,
    'claimed_at', now)
  local header = header_with(k.conv, 'claimed', agent_id, agent_name, now)
  redis.call('HSET', k.conv, 'header', cjson.encode(header))
  local hid = header.hid
  enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
    'k', 'update', 'h', hid, 'e', cjson.encode(header), 't', now)
  enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
    'k', 'note', 'h', hid, 'e', cjson.encode({type = 'claimed', agent_id = agent_id}), 't', now)
  if replies == '1' then
    enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'lifecycle', 'h', hid,
      'e', lifecycle(k.conv, 'handover_claimed', now, agent_id, agent_name,
        redis.call('HGET', k.conv, 'thread_ts') or ''), 't', now)
  end
end

-- The desk's per-handover SLA state (bridge/desk/sla.py), cleared whenever a handover ends or restarts.
local SLA_FIELDS = {'sla_remind_at', 'sla_escalate_at', 'sla_checked_at', 'sla_breached'}

-- A transferred handover's new root was just posted at (channel, ts) (commit.lua): the old thread
-- gets its closing line linking here and its root marked "Transferred", the owner is told.
-- header: the new handover's; out/ready/stats: the slack lane's; out_reply/ready_reply: the reply lane's.
local function transfer_landed(conv, header, cid, now, channel, ts, out, ready, stats, out_reply,
                               ready_reply, replies)
  local t = header.transfer
  local link = ''
  if (t.team_url or '') ~= '' then
    link = string.gsub(t.team_url, '/$', '') .. '/archives/' .. channel .. '/p' .. string.gsub(ts, '%.', '')
  end
  local old = cjson.decode(redis.call('HGET', conv, 'moved_header') or '{}')
  old.status, old.status_at = 'transferred', now
  old.agent_id, old.agent_name = t.agent_id, t.agent_name
  old.transferred_to = {route = header.route, channel = channel, link = link}
  enqueue(out, ready, stats, 'slack', cid, now, 'k', 'note', 'h', t.from_hid, 'e', cjson.encode({
    type = 'transferred', agent_id = t.agent_id, to_route = header.route, channel = channel, link = link}),
    't', now)
  enqueue(out, ready, stats, 'slack', cid, now, 'k', 'update', 'h', t.from_hid, 'e', cjson.encode(old), 't', now)
  redis.call('HDEL', conv, 'moved_header')
  if replies == '1' then
    local event = cjson.decode(lifecycle(conv, 'handover_transferred', now, t.agent_id, t.agent_name, ts))
    event.from_route, event.to_route, event.from_thread_ts = t.from_route, header.route, t.from_ts
    enqueue(out_reply, ready_reply, stats, 'reply', cid, now, 'k', 'lifecycle', 'h', header.hid,
      'e', cjson.encode(event), 't', now)
  end
end
