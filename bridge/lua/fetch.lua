-- What a worker needs to deliver a conversation, in one call: its hash (thread roots, in-flight
-- marker) and the oldest pending entries of one lane.
-- KEYS: conv, out   ARGV: limit
-- Returns {flat conv hash, {{id, {field, value, ...}}, ...}}
return {redis.call('HGETALL', KEYS[1]), redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[1])}
