-- The desk's timers of one partition (bridge/desk/sla.py), run by any replica: every due
-- conversation is looked at atomically here and rescheduled, so a reminder is queued exactly once
-- however many replicas sweep. For an open handover without an agent reply yet: the SLA reminder
-- (first_response, then every remind_every) and the escalation (escalate_after: a line, the root
-- marked, the owner told). Outside the route's business hours the SLA clock stops: its deadlines move
-- on by the time spent outside. For a resolved one: the end of its reopen window (button taken off).
-- KEYS: timers, ready_slack, stats, ready_reply
-- ARGV: now_ms, limit, conv_prefix, out_slack_prefix, out_reply_prefix, replies ('1'|'0'), check_ms,
--       routes json {route|'*': {h = in hours, f = first_response ms, r = remind ms|0,
--                                e = escalate ms|0, m = mention, em = escalate mention,
--                                c = look again at least this often (ms)}}
-- Returns {slack entries queued, reply entries queued, handovers seen for the first time, {breached route...}}
local now, check_ms = tonumber(ARGV[1]), tonumber(ARGV[7])
local routes = cjson.decode(ARGV[8])
local slack_n, reply_n, seen, breaches = 0, 0, 0, {}
local function note(out, cid, hid, data)
  enqueue(out, KEYS[2], KEYS[3], 'slack', cid, now, 'k', 'note', 'h', hid, 'e', cjson.encode(data), 't', now)
  slack_n = slack_n + 1
end
local function earliest(a, b)
  if a == nil or (b ~= nil and b < a) then return b end
  return a
end

local function sla(cid, conv, out, c)
  local header = cjson.decode(c[2] or '{}')
  local cfg = routes[header.route or ''] or routes['*']
  if not c[7] then seen = seen + 1 end
  if not cfg then
    redis.call('HSET', conv, 'sla_checked_at', now)
    return nil
  end
  local opened = tonumber(c[3] or now)
  local remind_at = tonumber(c[5] or (opened + cfg.f))
  local escalate_at = tonumber(c[6] or (cfg.e > 0 and opened + cfg.e or 0))
  local breached = c[8] == '1'
  if not cfg.h then
    local shift = now - tonumber(c[7] or now)
    if remind_at > 0 then remind_at = remind_at + shift end
    if escalate_at > 0 then escalate_at = escalate_at + shift end
  else
    if remind_at > 0 and remind_at <= now then
      note(out, cid, c[10], {type = 'sla_reminder', mention = cfg.m, waited_ms = now - opened})
      remind_at = cfg.r > 0 and now + cfg.r or 0
    end
    if escalate_at > 0 and escalate_at <= now and not breached then
      breached = true
      breaches[#breaches + 1] = header.route or ''
      note(out, cid, c[10], {type = 'sla_escalated', mention = cfg.em, waited_ms = now - opened})
      header.sla_breached = true
      local encoded = cjson.encode(header)
      redis.call('HSET', conv, 'header', encoded)
      enqueue(out, KEYS[2], KEYS[3], 'slack', cid, now, 'k', 'update', 'h', c[10], 'e', encoded, 't', now)
      if ARGV[6] == '1' then
        local event = cjson.decode(lifecycle(conv, 'handover_sla_breached', now, '', '',
          redis.call('HGET', conv, 'thread_ts') or ''))
        event.route, event.waited_ms = header.route or '', now - opened
        enqueue(ARGV[5] .. cid, KEYS[4], KEYS[3], 'reply', cid, now, 'k', 'lifecycle', 'h', c[10],
          'e', cjson.encode(event), 't', now)
        reply_n = reply_n + 1
      end
    end
  end
  redis.call('HSET', conv, 'sla_remind_at', remind_at, 'sla_escalate_at', escalate_at,
    'sla_checked_at', now, 'sla_breached', breached and '1' or '0')
  local next_at = nil
  if remind_at > 0 then next_at = remind_at end
  if escalate_at > 0 and not breached then next_at = earliest(next_at, escalate_at) end
  -- (looked at again at least every cfg.c, so a change of business hours is seen in time)
  if next_at then next_at = math.min(next_at, now + math.min(cfg.c or check_ms, check_ms)) end
  return next_at
end

for _, cid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  local conv, out = ARGV[3] .. cid, ARGV[4] .. cid
  local c = redis.call('HMGET', conv, 'state', 'header', 'opened_at', 'first_response_at', 'sla_remind_at',
    'sla_escalate_at', 'sla_checked_at', 'sla_breached', 'last_header', 'hid')
  local next_at = nil
  if c[9] then  -- a resolved handover that may still be reopened
    local last = cjson.decode(c[9])
    local until_ms = tonumber(last.reopen_until or 0)
    if until_ms <= now then
      last.reopen_until = nil
      enqueue(out, KEYS[2], KEYS[3], 'slack', cid, now, 'k', 'update', 'h', last.hid, 'e', cjson.encode(last),
        't', now)
      slack_n = slack_n + 1
      redis.call('HDEL', conv, 'last_header', 'resolved_at')
    else
      next_at = until_ms
    end
  end
  if (c[1] == 'open' or c[1] == 'claimed') and not c[4] then
    next_at = earliest(next_at, sla(cid, conv, out, c))
  end
  if next_at then
    redis.call('ZADD', KEYS[1], next_at, cid)
  else
    redis.call('ZREM', KEYS[1], cid)
  end
end
return {slack_n, reply_n, seen, breaches}
