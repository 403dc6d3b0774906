-- ratewarden: one policy check, all or nothing.
--
-- KEYS[i]: the state of the i-th applicable scope.
-- ARGV: mode (1 check, 0 peek, 2 refund), cost, a time (0: the server's), then six
-- numbers per scope:
--   algorithm (1 fixed window, 2 sliding window, 3 sliding log, 4 gcra), shadow (1/0),
--   limit n (gcra: burst), window W, p1, p2
--   fixed window: p1 = anchor (0 clock, 1 first request)
--   gcra:         p1 = emission interval T, p2 = tolerance burst x T
-- Times are whole microseconds from the server's clock. Lua numbers are doubles: every
-- value here stays below 2^53 (rates are checked when the policy is built; sliding-log
-- running totals are rebased before they reach it), so the arithmetic is exact;
-- divisions go through idiv, which corrects the rounding of the float quotient.
--
-- Reply: allowed (1/0), then six integers per scope: allowed, limit, remaining (scaled),
-- unit of remaining, reset after, retry after (microseconds).
--
-- Every scope is decided before anything is written; a denial writes nothing. Every key
-- written gets a TTL after which its state equals a fresh key's.

if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local commit = ARGV[1] == '1'
local refunding = ARGV[1] == '2'
local cost = tonumber(ARGV[2])
-- A time given by the caller replaces the server's only in the differential tests.
local now = tonumber(ARGV[3])
if now == 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local count = #KEYS

local function idiv(x, y)
  local q = math.floor(x / y)
  local r = x - q * y
  while r < 0 do
    q = q - 1
    r = r + y
  end
  while r >= y do
    q = q + 1
    r = r - y
  end
  return q
end

-- Numbers go to Redis as plain integers: Lua's own conversion would print large ones in
-- exponent form.
local function str(x)
  return string.format('%.0f', x)
end

local function max(a, b)
  if a > b then return a end
  return b
end

local function min(a, b)
  if a < b then return a end
  return b
end

-- Expires the key `micros` after now (rounded up to a millisecond). An absolute time, so
-- that the expiry follows the same clock as the decisions.
local function expire(key, micros)
  redis.call('PEXPIREAT', key, str(idiv(now + max(micros, 1) + 999, 1000)))
end

local function allow(n, rem, unit, reset)
  return { 1, n, rem, unit, reset, 0 }
end

local function deny(n, rem, reset, retry)
  return { 0, n, rem, 1, reset, max(retry, 0) }
end

-- Fixed window -------------------------------------------------------------------------

local function fw_current(key, n, w, anchor)
  local v = redis.call('HMGET', key, 's', 'c')
  local s, c = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if c > 0 and now < s + w then
    return s, c
  end
  if anchor == 0 then
    return now - math.fmod(now, w), 0
  end
  return now, 0
end

local function fw_decide(key, n, w, anchor, c)
  local start, used = fw_current(key, n, w, anchor)
  local until_end = start + w - max(now, start)
  if used + c <= n then
    local reset = until_end
    if used + c == 0 then reset = 0 end
    return allow(n, n - used - c, 1, reset)
  end
  return deny(n, max(n - used, 0), until_end, until_end)
end

local function fw_commit(key, n, w, anchor, c)
  local start, used = fw_current(key, n, w, anchor)
  redis.call('HSET', key, 's', str(start), 'c', str(used + c))
  expire(key, start + w - now)
end

-- Sliding window (counter) -------------------------------------------------------------

local function sw_rolled(key, w)
  local v = redis.call('HMGET', key, 's', 'p', 'c')
  local s, p, c = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local start = now - math.fmod(now, w)
  if start == s or start < s then
    return s, p, c
  elseif start == s + w then
    return start, c, 0
  end
  return start, 0, 0
end

local function sw_decide(key, n, w, c)
  local s, prev, cur = sw_rolled(key, w)
  local at = max(now, s)
  local e = min(at - s, w - 1)
  local weighted = prev * (w - e)
  local budget = n * w
  local allowed = weighted + (cur + c) * w <= budget
  local counted = cur
  if allowed then counted = cur + c end
  local remaining = idiv(max(budget - weighted - counted * w, 0), w)
  local window_end = s + w
  local reset = 0
  if counted > 0 then
    reset = window_end + w - at
  elseif prev > 0 then
    reset = window_end - at
  end
  if allowed then
    return allow(n, remaining, 1, reset)
  end
  local retry_at
  if cur + c <= n then
    local slack = idiv((n - cur - c) * w, max(prev, 1))
    retry_at = window_end - min(slack, w)
  else
    local slack = idiv(max(n - c, 0) * w, max(cur, 1))
    retry_at = window_end + w - min(slack, w)
  end
  return deny(n, remaining, reset, retry_at - at)
end

local function sw_commit(key, n, w, c)
  local s, prev, cur = sw_rolled(key, w)
  redis.call('HSET', key, 's', str(s), 'p', str(prev), 'c', str(cur + c))
  expire(key, s + 2 * w - now)
end

-- Sliding log --------------------------------------------------------------------------
-- A sorted set scored by admission time; each member is "<running total>:<cost>", the
-- running total zero-padded so that members admitted at the same time sort in order.
-- The total grows with every entry, so members are unique even at equal timestamps.

local function sl_parse(member)
  local sep = string.find(member, ':', 1, true)
  return tonumber(string.sub(member, 1, sep - 1)), tonumber(string.sub(member, sep + 1))
end

local function sl_decide(key, n, w, c)
  local first = redis.call('ZRANGEBYSCORE', key, '(' .. str(now - w), '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
  local sum, base, newest = 0, 0, nil
  if #first > 0 then
    local t1, c1 = sl_parse(first[1])
    base = t1 - c1
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local tl = sl_parse(last[1])
    sum = tl - base
    newest = tonumber(last[2])
  end
  local function expiry(at)
    return max(at + w - now, 0)
  end
  if sum + c <= n then
    local reset = 0
    if sum + c == 0 then
      reset = 0
    elseif c > 0 then
      reset = w
    elseif newest then
      reset = expiry(newest)
    end
    return allow(n, n - sum - c, 1, reset)
  end
  -- The oldest entries must expire until what is left is at most n - cost: find the
  -- first live entry whose running total reaches base + need (totals grow with rank).
  local need = sum + c - n
  local lo = redis.call('ZCOUNT', key, '-inf', str(now - w))
  local hi = redis.call('ZCARD', key) - 1
  while lo < hi do
    local mid = idiv(lo + hi, 2)
    local m = redis.call('ZRANGE', key, str(mid), str(mid))
    local total = sl_parse(m[1])
    if total - base < need then
      lo = mid + 1
    else
      hi = mid
    end
  end
  local found = redis.call('ZRANGE', key, str(lo), str(lo), 'WITHSCORES')
  local retry = w
  if #found > 0 then
    retry = expiry(tonumber(found[2]))
  end
  local reset = 0
  if newest then reset = expiry(newest) end
  return deny(n, max(n - sum, 0), reset, retry)
end

-- Running totals only reset when a key's log empties, so a key that never goes idle
-- would carry them past 2^53, where doubles stop counting units. Before that, the live
-- entries are rewritten with totals counted from their own start (at most n, which the
-- builder keeps below 2^52): O(entries), once per 2^52 units admitted.
local REBASE_AT = 4503599627370496

local function sl_rebase(key)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local t1, c1 = sl_parse(all[1])
  local base = t1 - c1
  redis.call('DEL', key)
  local total = 0
  for i = 1, #all, 2 do
    local t, cc = sl_parse(all[i])
    total = t - base
    redis.call('ZADD', key, all[i + 1], string.format('%016.0f:%.0f', total, cc))
  end
  return total
end

local function sl_commit(key, n, w, c)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', str(now - w))
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local total, at = 0, now
  if #last > 0 then
    total = sl_parse(last[1])
    -- A reading earlier than the newest entry counts as no time passing.
    at = max(now, tonumber(last[2]))
    if total + c >= REBASE_AT then
      total = sl_rebase(key)
    end
  end
  local member = string.format('%016.0f:%.0f', total + c, c)
  redis.call('ZADD', key, str(at), member)
  expire(key, at + w - now)
end

-- GCRA ---------------------------------------------------------------------------------

local function gcra_decide(key, b, w, t, tau, c)
  local tat = tonumber(redis.call('GET', key)) or 0
  local base = max(tat, now)
  local new = base + c * t
  if new - now <= tau then
    return allow(b, tau - (new - now), t, new - now)
  end
  local backlog = base - now
  return deny(b, idiv(max(tau - backlog, 0), t), backlog, new - tau - now)
end

local function gcra_commit(key, b, w, t, tau, c)
  local tat = tonumber(redis.call('GET', key)) or 0
  local new = max(tat, now) + c * t
  redis.call('SET', key, str(new))
  expire(key, new - now)
end

-- The check ----------------------------------------------------------------------------

local function scope(i)
  local a = 4 + (i - 1) * 6
  return tonumber(ARGV[a]), ARGV[a + 1] == '1', tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
end

-- Refunds: give back up to `c`, never leaving a state fuller than fresh ----------------

local function fw_refund(key, n, w, anchor, c)
  local start, used = fw_current(key, n, w, anchor)
  local left = max(used - c, 0)
  if left == 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 's', str(start), 'c', str(left))
    expire(key, start + w - now)
  end
end

local function sw_refund(key, n, w, c)
  local s, prev, cur = sw_rolled(key, w)
  local from_cur = min(c, cur)
  cur = cur - from_cur
  prev = prev - min(c - from_cur, prev)
  if prev == 0 and cur == 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 's', str(s), 'p', str(prev), 'c', str(cur))
    expire(key, s + 2 * w - now)
  end
end

local function sl_refund(key, n, w, c)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', str(now - w))
  local left = c
  while left > 0 do
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if #last == 0 then break end
    local total, cost = sl_parse(last[1])
    local take = min(left, cost)
    left = left - take
    redis.call('ZREM', key, last[1])
    if take < cost then
      -- the newest entry keeps the rest; its running total stays above the one before
      local member = string.format('%016.0f:%.0f', total - take, cost - take)
      redis.call('ZADD', key, last[2], member)
    end
  end
  -- Removing the last member deletes the key, and a ZADD re-creates it without a TTL:
  -- set it again from the newest entry left.
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #newest > 0 then
    expire(key, tonumber(newest[2]) + w - now)
  end
end

local function gcra_refund(key, b, w, t, tau, c)
  local tat = tonumber(redis.call('GET', key)) or 0
  if tat <= now then
    return
  end
  tat = max(tat - c * t, now)
  if tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, str(tat))
    expire(key, tat - now)
  end
end

local function refund(i, c)
  local alg, _, n, w, p1, p2 = scope(i)
  local key = KEYS[i]
  if alg == 1 then
    fw_refund(key, n, w, p1, c)
  elseif alg == 2 then
    sw_refund(key, n, w, c)
  elseif alg == 3 then
    sl_refund(key, n, w, c)
  else
    gcra_refund(key, n, w, p1, p2, c)
  end
end

if refunding then
  for i = 1, count do
    refund(i, cost)
  end
  return { 1 }
end


local function decide(i, c)
  local alg, _, n, w, p1, p2 = scope(i)
  local key = KEYS[i]
  if alg == 1 then
    return fw_decide(key, n, w, p1, c)
  elseif alg == 2 then
    return sw_decide(key, n, w, c)
  elseif alg == 3 then
    return sl_decide(key, n, w, c)
  end
  return gcra_decide(key, n, w, p1, p2, c)
end

local function consume(i, c)
  local alg, _, n, w, p1, p2 = scope(i)
  local key = KEYS[i]
  if alg == 1 then
    fw_commit(key, n, w, p1, c)
  elseif alg == 2 then
    sw_commit(key, n, w, c)
  elseif alg == 3 then
    sl_commit(key, n, w, c)
  else
    gcra_commit(key, n, w, p1, p2, c)
  end
end

local decisions = {}
local allowed = true
for i = 1, count do
  local d = decide(i, cost)
  decisions[i] = d
  local _, shadow = scope(i)
  if d[1] == 0 and not shadow then
    allowed = false
  end
end

if allowed and commit and cost > 0 then
  for i = 1, count do
    if decisions[i][1] == 1 then
      consume(i, cost)
    end
  end
end

local reply = { 0 }
if allowed then reply[1] = 1 end
for i = 1, count do
  local d = decisions[i]
  -- A denied request spent nothing: allowing scopes report what really remains.
  if not allowed and d[1] == 1 and cost > 0 then
    d = decide(i, 0)
  end
  for j = 1, 6 do
    reply[#reply + 1] = d[j]
  end
end
return reply
