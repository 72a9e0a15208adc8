-- settle.lua: move runs of one queue after their outcome was written to the database.
--
-- KEYS[1]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- KEYS[2]  queue:{q}:leases    hash run id -> lease value
-- KEYS[3]  queue:{q}:ready     list of run ids
-- KEYS[4]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- KEYS[5]  queue:{q}:dlq       list of dead-lettered task ids
-- ARGV[1]  wake channel of the queue
-- ARGV[2..] groups of five: op, run id, lease value, extra 1, extra 2 (built in Python as
-- taskrt.queue.redis_index.Settle; SettleAction names each op). Ops:
--   A  ack: release the lease
--   R  retry: release, then place run <extra 1> ready, or delayed for <extra 2> ms (0: now)
--   D  dead-letter: release, then append task <extra 1> to the dead-letter list
--   Q  hand back: release, then put the run back at the head of the ready list
--   U  unstarted: only if the lease is still <lease value>, release and put back at the head
--   X  drop: release (only if the lease is still <lease value>)
--   L  later (the database refused the claim: not due yet): only if the lease is still
--      <lease value>, release and put the run back in delayed for <extra 2> ms
-- Delays are the time left by the database clock; scores are this server's TIME plus that.
-- A lease is released only while it still holds the given value, so a settle never takes a
-- lease another worker holds now.
-- Returns: number of groups applied.
local t = redis.call('TIME')
-- rounded up: a run is never placed to fall due before its time
local now_up = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local wake = false
local applied = 0
local function release(id, value)
  if redis.call('HGET', KEYS[2], id) == value then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    return true
  end
  return false
end
local function push_ready(id, head)
  local length
  if head then length = redis.call('LPUSH', KEYS[3], id) else length = redis.call('RPUSH', KEYS[3], id) end
  if length == 1 then wake = true end
end
for i = 2, #ARGV, 5 do
  local op, id, value, x1, x2 = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if op == 'A' or op == 'X' then
    release(id, value)
    applied = applied + 1
  elseif op == 'R' then
    release(id, value)
    local left = tonumber(x2)
    if left <= 0 then push_ready(x1, false) else
      redis.call('ZADD', KEYS[4], now_up + left, x1)
      wake = true
    end
    applied = applied + 1
  elseif op == 'L' then
    if release(id, value) then
      redis.call('ZADD', KEYS[4], now_up + math.max(tonumber(x2), 1), id)
      wake = true
      applied = applied + 1
    end
  elseif op == 'D' then
    release(id, value)
    redis.call('RPUSH', KEYS[5], x1)
    applied = applied + 1
  elseif op == 'Q' then
    release(id, value)
    push_ready(id, true)
    applied = applied + 1
  elseif op == 'U' then
    if release(id, value) then
      push_ready(id, true)
      applied = applied + 1
    end
  end
end
if wake then redis.call('PUBLISH', ARGV[1], 'w') end
return applied
