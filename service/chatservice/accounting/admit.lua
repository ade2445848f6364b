-- One atomic rate-limit check (limits.py explains the model). The clock is the server's, so
-- replicas with skewed clocks still share one timeline.
-- KEYS: one per limit. ARGV: tokens, lease id, lease ms, then per limit: kind (r, t, c), limit.
-- Returns {allowed, denied index (0: none), retry after ms, then per limit remaining, reset ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tokens = tonumber(ARGV[1])
local lease = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local window = 60000
local out = {1, 0, 0}
local commits = {}
for i, key in ipairs(KEYS) do
  local kind = ARGV[2 + 2 * i]
  local limit = tonumber(ARGV[3 + 2 * i])
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local held = redis.call('ZCARD', key)
    if held >= limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      return {0, i, math.max(1, math.ceil(tonumber(oldest[2]) - now)), 0, 0}
    end
    commits[i] = {'c'}
    out[2 + 2 * i] = limit - held - 1
    out[3 + 2 * i] = 0
  else
    local cost = 1
    if kind == 't' then cost = tokens end
    local interval = window / limit
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    if new_tat - now > window + 0.001 then
      local retry = new_tat - now - window
      if cost > limit then retry = -1 end
      return {0, i, math.ceil(retry), math.floor((window - (tat - now)) / interval), math.ceil(tat - now)}
    end
    commits[i] = {'g', new_tat}
    out[2 + 2 * i] = math.floor((window - (new_tat - now)) / interval + 0.000001)
    out[3 + 2 * i] = math.ceil(new_tat - now)
  end
end
for i, key in ipairs(KEYS) do
  local commit = commits[i]
  if commit[1] == 'c' then
    redis.call('ZADD', key, now + lease_ms, lease)
    redis.call('PEXPIRE', key, lease_ms)
  else
    redis.call('SET', key, tostring(commit[2]), 'PX', math.ceil(commit[2] - now) + 1)
  end
end
return out
