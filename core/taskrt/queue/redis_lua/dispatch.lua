-- dispatch.lua: place queued runs in their queue, ready now or delayed until their due time.
--
-- Due times are the database's: the caller passes the time a run has left by the database
-- clock, and the score is this server's TIME plus that, so promotion by this clock happens
-- when the run falls due by the database clock, however far apart the two clocks are.
--
-- KEYS[1]  queue:{q}:ready     list of run ids
-- KEYS[2]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- KEYS[3]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- ARGV[1]  wake channel of the queue
-- ARGV[2..] pairs: run id, ms left until it is due (0 or less: ready now)
-- Returns: number of runs placed. A run already in flight is skipped (a relay or reconcile
-- repeating a dispatch must not hand one run to two workers). Publishes on the wake channel
-- when the ready list goes from empty to not empty, or when a new earliest delayed run appears.
local t = redis.call('TIME')
-- rounded up: a run is never placed to fall due before its time
local now_up = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local ready = {}
local earliest = nil
local placed = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local left = tonumber(ARGV[i + 1])
  if not redis.call('ZSCORE', KEYS[3], id) then
    placed = placed + 1
    if left <= 0 then
      ready[#ready + 1] = id
    else
      local due = now_up + left
      redis.call('ZADD', KEYS[2], due, id)
      if earliest == nil or due < earliest then earliest = due end
    end
  end
end
local wake = false
if #ready > 0 then
  local length = redis.call('RPUSH', KEYS[1], unpack(ready))
  if length == #ready then wake = true end
end
if earliest ~= nil then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) >= earliest then wake = true end
end
if wake then redis.call('PUBLISH', ARGV[1], 'w') end
return placed
