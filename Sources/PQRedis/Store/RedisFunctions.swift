import PQCore

/// The Redis functions of ``RedisTaskStore`` (one library, loaded with `FUNCTION LOAD`): every
/// state change is one function call, atomic across hosts, that publishes its events in the
/// same step.
///
/// Every function takes the namespace's lease set (`{ns}:leases`) as its one declared key, so a
/// Redis Cluster routes the call to the shard of the namespace; every other key it touches is
/// derived from that key's prefix and carries the same hash tag, so it lives in the same slot.
/// Its first two arguments are the key prefix (`{ns}:`) and the channel prefix (`ns_`).
///
/// What the store keeps per task (DESIGN.md section 6), under the prefix:
/// - `t:<id>`: the task, a hash of short fields (``RedisTaskHash``): `j`, the members of its JSON
///   that never change (``PQCore/TaskRecord/fixedJSONMembers``, written by the host that queues
///   it), and the few fields a run changes. A finished task's hash expires after the result TTL.
/// - `w:<queue>\0<job>`: the waiting (QUEUED, RETRY) tasks of one queue and job by eta; members
///   are the task's order (``RedisTaskHash/order(time:index:)``) and its id, so equal etas keep
///   queue order. `waitkeys` is the
///   set of those `<queue>\0<job>` names.
/// - `leases`: running tasks by lease end. `run:<job>` the same for a job with
///   `max_concurrency` only; `ov:<job>\0<kwargs>` the active task of a `can_overlap = false` job
///   only; `retrying`: RETRY tasks by eta (for `pq queues`).
/// - `order`: a counter of queued tasks (a cheap sign of change for hosts that lost their
///   subscription). No event history: events are pub/sub messages only.
enum RedisFunctions {
    static let body = #"""
        local P, CH = '', ''
        local NUL = '\0'
        local ORDERLEN = \#(RedisTaskHash.orderLength)
        -- Status numbers and names, from TaskStatus.
        local SUCCESS, FAILURE, REVOKED = '\#(TaskStatus.success.rawValue)', '\#(TaskStatus.failure.rawValue)', '\#(TaskStatus.revoked.rawValue)'
        local RETRY, STARTED, QUEUED = '\#(TaskStatus.retry.rawValue)', '\#(TaskStatus.started.rawValue)', '\#(TaskStatus.queued.rawValue)'
        local NAMES = {\#(luaTable(TaskStatus.allCases) { "'\($0.name)'" })}
        local KINDS = {\#(luaTable(TaskStatus.allCases) { "'\(TaskEventKind(for: $0).rawValue)'" })}
        local WAITING = {\#(luaTable(TaskStatus.waitingStates) { _ in "true" })}
        local READY = {\#(luaTable(TaskStatus.readyStates) { _ in "true" })}
        local ACTIVE = {\#(luaTable(TaskStatus.activeStates) { _ in "true" })}

        local SUBS = {}
        local function setup(a) P = a[1]; CH = a[2]; SUBS = {} end
        -- Whether anyone listens on a kind's channel: a message no one receives is neither
        -- rendered nor published (one PUBSUB NUMSUB per kind and call, not a PUBLISH per task).
        local function wants(kind)
          local w = SUBS[kind]
          if w == nil then
            w = redis.call('PUBSUB', 'NUMSUB', CH .. 'task_' .. kind)[2] > 0
            SUBS[kind] = w
          end
          return w
        end
        local function tkey(id) return P .. 't:' .. id end
        local function wkey(wk) return P .. 'w:' .. wk end
        local function jobname(wk) return string.sub(wk, string.find(wk, NUL, 1, true) + 1) end
        local function qname(wk) return string.sub(wk, 1, string.find(wk, NUL, 1, true) - 1) end
        -- The task as a table by field name, and the flat reply it was read from.
        local function load(id)
          local flat = redis.call('HGETALL', tkey(id))
          if #flat == 0 then return nil, flat end
          local t = {id = id}
          for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
          return t, flat
        end
        local function flatten(t)
          local out = {}
          for k, v in pairs(t) do out[#out + 1] = k; out[#out + 1] = v end
          return out
        end
        local function jstr(s)
          if not s then return 'null' end
          if not string.find(s, '[%z\1-\31"\\]') then return '"' .. s .. '"' end
          local escaped = string.gsub(s, '[%z\1-\31"\\]', function(c)
            if c == '"' then return '\\"' elseif c == '\\' then return '\\\\'
            elseif c == '\n' then return '\\n' elseif c == '\r' then return '\\r' elseif c == '\t' then return '\\t'
            else return string.format('\\u%04x', string.byte(c)) end
          end)
          return '"' .. escaped .. '"'
        end
        local function jraw(s, empty)
          if not s or s == '' then return empty end
          if string.byte(s, 1) > 32 and string.byte(s, -1) > 32 then return s end
          local trimmed = string.match(s, '^[ \n\r\t]*(.-)[ \n\r\t]*$')
          if trimmed == '' then return empty end
          return trimmed
        end
        local function jnum(s) if not s then return 'null' end return s end
        -- The runs of fixed members in `j` (TaskRecord.fixedJSONMembers), split at NUL.
        local function segments(j)
          local out, start = {}, 1
          while true do
            local z = string.find(j, NUL, start, true)
            if not z then
              out[#out + 1] = string.sub(j, start)
              return out
            end
            out[#out + 1] = string.sub(j, start, z - 1)
            start = z + 1
          end
        end
        -- The task JSON, as TaskRecord.json() writes it (made from the field table, TaskField).
        \#(TaskField.luaRenderer)        local function publish(kind, json)
          redis.call('PUBLISH', CH .. 'task_' .. kind, '{"event":"' .. kind .. '","task":' .. json .. '}')
        end
        local function changed() redis.call('PUBLISH', CH .. 'changed', '') end
        local function member(t) return t.o .. t.id end
        -- One command for many members, in chunks that unpack can take.
        local function many(cmd, key, list)
          for s = 1, #list, 1000 do redis.call(cmd, key, unpack(list, s, math.min(#list, s + 999))) end
        end
        -- Keeps the indexes right after a state change from `old`.
        local function index(t, old, ttl)
          if WAITING[t.s] then
            redis.call('ZADD', wkey(t.wk), t.e, member(t))
            redis.call('SADD', P .. 'waitkeys', t.wk)
            if t.s == RETRY then redis.call('ZADD', P .. 'retrying', t.e, t.id)
            elseif old == RETRY then redis.call('ZREM', P .. 'retrying', t.id) end
          elseif old and WAITING[old] then
            redis.call('ZREM', wkey(t.wk), member(t))
            if old == RETRY then redis.call('ZREM', P .. 'retrying', t.id) end
          end
          if t.s == STARTED then
            redis.call('ZADD', P .. 'leases', t.l, t.id)
            if t.mc then redis.call('ZADD', P .. 'run:' .. jobname(t.wk), t.l, t.id) end
          elseif old == STARTED then
            redis.call('ZREM', P .. 'leases', t.id)
            if t.mc then redis.call('ZREM', P .. 'run:' .. jobname(t.wk), t.id) end
          end
          if READY[t.s] and not (old and READY[old]) then
            if t.ov then
              local okey = P .. 'ov:' .. t.ov
              if redis.call('GET', okey) == t.id then redis.call('DEL', okey) end
            end
            redis.call('EXPIRE', tkey(t.id), ttl)
          end
        end
        -- Sets and deletes fields, keeps the indexes right, publishes the event of a state change.
        local function update(t, set, del, ttl)
          local old = t.s
          local args = {}
          for k, v in pairs(set) do t[k] = v; args[#args + 1] = k; args[#args + 1] = v end
          local key = tkey(t.id)
          if #args > 0 then redis.call('HSET', key, unpack(args)) end
          if del and #del > 0 then
            for _, k in ipairs(del) do t[k] = nil end
            redis.call('HDEL', key, unpack(del))
          end
          index(t, old, ttl)
          if (old ~= t.s or t.s == RETRY) and wants(KINDS[t.s]) then publish(KINDS[t.s], render(t)) end
        end
        -- An optional set: a count (-1 for none) then the names; returns it and the next index.
        local function readset(a, i)
          local n = tonumber(a[i]); i = i + 1
          if n < 0 then return nil, i end
          local set = {}
          for x = 1, n do set[a[i]] = true; i = i + 1 end
          return set, i
        end
        local function waitkeys(queues, jobs)
          local keys = {}
          for _, wk in ipairs(redis.call('SMEMBERS', P .. 'waitkeys')) do
            if (not queues or queues[qname(wk)]) and (not jobs or jobs[jobname(wk)]) then keys[#keys + 1] = wkey(wk) end
          end
          return keys
        end

        -- The tasks whose id was given or whose job may not overlap (the host queues the others
        -- with plain commands in MULTI/EXEC: RedisTaskStore.enqueue).
        -- a: P, CH, n, then per task: id, check ('1': the id was given, look for a task holding it),
        -- eta, wait name, overlap name ('' unless can_overlap = false), fixed members, retry, order
        -- (the host's: RedisTaskStore.order), m, then m more field-value pairs. Returns per task 0
        -- (queued) or the twin's fields; when a given id is taken, that id alone, nothing written.
        local function enqueue(keys, a)
          setup(a)
          local n = tonumber(a[3])
          local i = 4
          local tasks, seen = {}, {}
          for x = 1, n do
            local t = {id = a[i], e = a[i + 2], wk = a[i + 3], ov = a[i + 4], j = a[i + 5], r = a[i + 6], s = QUEUED, o = a[i + 7]}
            local m = tonumber(a[i + 8])
            t.first = i + 9; t.m = m
            if a[i + 1] == '1' then
              if seen[t.id] or redis.call('EXISTS', tkey(t.id)) == 1 then
                return t.id  -- a bare string: this id is taken (success is an array)
              end
              seen[t.id] = true
            end
            i = i + 9 + 2 * m
            tasks[x] = t
          end
          redis.call('INCRBY', P .. 'order', n)
          local out, adds = {}, {}
          for x, t in ipairs(tasks) do
            local twin, okey = nil, nil
            if t.ov ~= '' then
              okey = P .. 'ov:' .. t.ov
              local tid = redis.call('GET', okey)
              if tid then
                local other = load(tid)
                if other and ACTIVE[other.s] then twin = other end
              end
            end
            if twin then
              out[x] = flatten(twin)
            else
              local o = t.o
              local fields = {'j', t.j, 's', QUEUED, 'e', t.e, 'o', o, 'wk', t.wk, 'r', t.r}
              if okey then
                redis.call('SET', okey, t.id)
                fields[#fields + 1] = 'ov'; fields[#fields + 1] = t.ov
              end
              for y = t.first, t.first + 2 * t.m - 2, 2 do
                fields[#fields + 1] = a[y]; fields[#fields + 1] = a[y + 1]
                t[a[y]] = a[y + 1]  -- the queued event shows them too (plugin, version)
              end
              redis.call('HSET', tkey(t.id), unpack(fields))
              local list = adds[t.wk]
              if not list then list = {}; adds[t.wk] = list end
              list[#list + 1] = t.e; list[#list + 1] = o .. t.id
              if wants('queued') then publish('queued', render(t)) end
              out[x] = 0
            end
          end
          for wk, list in pairs(adds) do
            many('ZADD', wkey(wk), list)
            redis.call('SADD', P .. 'waitkeys', wk)
          end
          changed()
          return out
        end

        -- a: P, CH, now, lease end, worker, node, limit, queues (set), jobs (set), result TTL, the
        -- exception of an expired task.
        -- Returns the claimed tasks' fields as they were before the claim (the host applies it).
        local function claim(keys, a)
          setup(a)
          local now, lease, worker, node = a[3], a[4], a[5], a[6]
          local nnow = tonumber(now)
          local limit = tonumber(a[7])
          local queues, i = readset(a, 8)
          local jobs
          jobs, i = readset(a, i)
          local ttl, expiredText = a[i], a[i + 1]
          local wkeys = waitkeys(queues, jobs)
          local claimed, running, full = {}, {}, {}
          local anyexpired = false
          local unwaited, leased, runs, unretry = {}, {}, {}, {}
          for pass = 1, 8 do
            -- Candidates in parallel lists (members, wait keys; scores only to merge several
            -- wait sets in eta order), so that no table is made per candidate.
            local cm, ck = {}, {}
            local open = {}
            for _, k in ipairs(wkeys) do if not full[k] then open[#open + 1] = k end end
            if #open == 1 then
              local k = open[1]
              local r = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'LIMIT', 0, limit - #claimed)
              for x = 1, #r do cm[x] = r[x]; ck[x] = k end
            elseif #open > 1 then
              local cands = {}
              for _, k in ipairs(open) do
                local r = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit - #claimed)
                for x = 1, #r, 2 do cands[#cands + 1] = {r[x], tonumber(r[x + 1]), k} end
              end
              table.sort(cands, function(p, q)
                if p[2] ~= q[2] then return p[2] < q[2] end
                return p[1] < q[1]
              end)
              for x, c in ipairs(cands) do cm[x] = c[1]; ck[x] = c[3] end
            end
            if #cm == 0 then break end
            local expired = 0
            for x = 1, #cm do
              if #claimed >= limit then break end
              local member, wk = cm[x], ck[x]
              if not full[wk] then
                local id = string.sub(member, ORDERLEN + 1)
                local t, flat = load(id)
                if not t or not WAITING[t.s] then
                  redis.call('ZREM', wk, member)
                elseif t.ex and tonumber(t.ex) < nnow then
                  update(t, {s=REVOKED, f=expiredText, te=now}, nil, ttl)
                  expired = expired + 1
                else
                  local ok, name = true, nil
                  if t.mc then
                    name = jobname(t.wk)
                    local count = running[name]
                    if count == nil then count = redis.call('ZCOUNT', P .. 'run:' .. name, now, '+inf') end
                    if count >= tonumber(t.mc) then
                      ok = false
                      full[wk] = true
                    else
                      running[name] = count + 1
                    end
                  end
                  if ok then
                    -- What update() would do, with the index writes of the whole claim gathered
                    -- into a few commands below.
                    if t.s == RETRY then unretry[#unretry + 1] = id end
                    t.s = STARTED; t.ts = now; t.w = worker; t.n = node; t.l = lease; t.r = tostring(tonumber(t.r) + 1)
                    local key = tkey(id)
                    if t.c then
                      t.c = '0'
                      redis.call('HSET', key, 's', STARTED, 'ts', now, 'w', worker, 'n', node, 'l', lease, 'r', t.r, 'c', '0')
                    else
                      redis.call('HSET', key, 's', STARTED, 'ts', now, 'w', worker, 'n', node, 'l', lease, 'r', t.r)
                    end
                    if t.te then
                      t.te = nil
                      redis.call('HDEL', key, 'te')
                    end
                    local gone = unwaited[wk]
                    if not gone then gone = {}; unwaited[wk] = gone end
                    gone[#gone + 1] = member
                    leased[#leased + 1] = lease; leased[#leased + 1] = id
                    if name then
                      local jr = runs[name]
                      if not jr then jr = {}; runs[name] = jr end
                      jr[#jr + 1] = lease; jr[#jr + 1] = id
                    end
                    if wants('started') then publish('started', render(t)) end
                    -- The fields as they were: the host applies the claim itself (TaskEngine.claim).
                    claimed[#claimed + 1] = flat
                  end
                end
              end
            end
            if expired == 0 or #claimed >= limit then break end
            anyexpired = true
          end
          for k, members in pairs(unwaited) do many('ZREM', k, members) end
          if #leased > 0 then many('ZADD', P .. 'leases', leased) end
          for name, list in pairs(runs) do many('ZADD', P .. 'run:' .. name, list) end
          if #unretry > 0 then many('ZREM', P .. 'retrying', unretry) end
          if anyexpired then changed() end
          return claimed
        end

        -- a: P, CH, result TTL, n (negative: quiet, -n outcomes), then per outcome id, worker,
        -- kind, text, eta, time, plugin, plugin version (empty to keep the stored one). Returns
        -- per outcome the fields, or 0 when skipped; when quiet, the number applied.
        local function finish(keys, a)
          setup(a)
          local ttl = a[3]
          local n = tonumber(a[4])
          local quiet = n < 0
          if quiet then n = -n end
          local applied, out = 0, {}
          for x = 1, n do
            local b = 5 + (x - 1) * 8
            local id, w, kind, text, eta, time = a[b], a[b + 1], a[b + 2], a[b + 3], a[b + 4], a[b + 5]
            local plugin, pver = a[b + 6], a[b + 7]
            local t = load(id)
            if t and t.s == STARTED and t.w == w then
              local set
              local del = nil
              if kind == 'success' then set = {s=SUCCESS, x=text, te=time}; if t.f then del = {'f'} end
              elseif kind == 'failure' then set = {s=FAILURE, f=text, te=time}
              elseif kind == 'retry' then set = {s=RETRY, f=text, e=eta}
              elseif kind == 'revoked' then set = {s=REVOKED, f=text, te=time}
              else
                local neweta = t.e
                if tonumber(time) < tonumber(t.e) then neweta = time end
                set = {s=QUEUED, r=tostring(math.max(0, tonumber(t.r) - 1)), e=neweta}
              end
              if kind ~= 'released' and plugin ~= '' then set.p = plugin; set.v = pver end
              if t.c then set.c = '0' end
              update(t, set, del, ttl)
              if not quiet then out[x] = flatten(t) end
              applied = applied + 1
            elseif not quiet then
              out[x] = 0
            end
          end
          if applied > 0 then changed() end
          if quiet then return applied end
          return out
        end

        -- Ends tasks whose final record the host knows (it claimed them): the host sends the
        -- fields and the event JSON, so nothing is read but the owner and nothing rendered.
        -- a: P, CH, result TTL, n, then per outcome id, worker, job ('' unless it has
        -- max_concurrency), overlap name ('' unless can_overlap = false), event JSON, the number
        -- of fields to set and their names and values, the number to delete and their names.
        -- Applies only to a task still STARTED by that worker. Returns the number applied.
        local function finishEnded(keys, a)
          setup(a)
          local ttl = a[3]
          local n = tonumber(a[4])
          local i = 5
          local leases, runs, count = {}, {}, 0
          for x = 1, n do
            local id, w, run, ov, json = a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4]
            local nset = tonumber(a[i + 5])
            local sets = i + 6
            i = i + 6 + 2 * nset
            local ndel = tonumber(a[i])
            local dels = i + 1
            i = i + 1 + ndel
            local key = tkey(id)
            local f = redis.call('HMGET', key, 's', 'w')
            if f[1] == STARTED and f[2] == w then
              redis.call('HSET', key, unpack(a, sets, sets + 2 * nset - 1))
              if ndel > 0 then redis.call('HDEL', key, unpack(a, dels, dels + ndel - 1)) end
              redis.call('EXPIRE', key, ttl)
              leases[#leases + 1] = id
              if run ~= '' then
                local r = runs[run]
                if not r then r = {}; runs[run] = r end
                r[#r + 1] = id
              end
              if ov ~= '' then
                local k = P .. 'ov:' .. ov
                if redis.call('GET', k) == id then redis.call('DEL', k) end
              end
              if wants('done') then publish('done', json) end
              count = count + 1
            end
          end
          if count > 0 then
            many('ZREM', P .. 'leases', leases)
            for name, ids in pairs(runs) do many('ZREM', P .. 'run:' .. name, ids) end
            changed()
          end
          return count
        end

        -- a: P, CH, worker, lease end, ids... Returns the ids to cancel.
        local function renew(keys, a)
          setup(a)
          local w, lease = a[3], a[4]
          local cancel, leased, runs = {}, {}, {}
          for i = 5, #a do
            local id = a[i]
            local f = redis.call('HMGET', tkey(id), 's', 'w', 'c', 'mc', 'wk')
            if f[1] == STARTED and f[2] == w then
              redis.call('HSET', tkey(id), 'l', lease)
              leased[#leased + 1] = lease; leased[#leased + 1] = id
              if f[4] then
                local name = jobname(f[5])
                local r = runs[name]
                if not r then r = {}; runs[name] = r end
                r[#r + 1] = lease; r[#r + 1] = id
              end
              if f[3] == '1' then cancel[#cancel + 1] = id end
            else
              cancel[#cancel + 1] = id
            end
          end
          if #leased > 0 then many('ZADD', P .. 'leases', leased) end
          for name, list in pairs(runs) do many('ZADD', P .. 'run:' .. name, list) end
          return cancel
        end

        -- a: P, CH, mode ('expired' or 'worker'), now, max dead runs, worker, result TTL, then the
        -- exceptions of TaskEngine.recover (`{worker}` and `{runs}` to fill in): revoked, failed.
        -- Returns the changed tasks' fields.
        local function recover(keys, a)
          setup(a)
          local mode, now, maxdead, who, ttl = a[3], a[4], tonumber(a[5]), a[6], a[7]
          local function fill(template, w, runs)
            local text = string.gsub(template, '{worker}', function() return w end)
            text = string.gsub(text, '{runs}', function() return tostring(runs) end)
            return text
          end
          local ids
          if mode == 'expired' then
            ids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, 10000)
          else
            ids = redis.call('ZRANGE', P .. 'leases', 0, -1)
          end
          local victims = {}
          for _, id in ipairs(ids) do
            local t = load(id)
            if not t or t.s ~= STARTED then
              redis.call('ZREM', P .. 'leases', id)
            elseif mode == 'expired' or t.w == who then
              victims[#victims + 1] = t
            end
          end
          table.sort(victims, function(p, q) return tonumber(p.e) < tonumber(q.e) end)
          local out = {}
          for _, t in ipairs(victims) do
            local w = t.w or '?'
            local dead = tonumber(t.k or '0') + 1
            if t.c == '1' then
              update(t, {s=REVOKED, f=fill(a[8], w, dead), te=now, k=tostring(dead), c='0'}, nil, ttl)
            elseif dead >= maxdead then
              update(t, {s=FAILURE, f=fill(a[9], w, dead), te=now, k=tostring(dead), c='0'}, nil, ttl)
            else
              local neweta = t.e
              if tonumber(now) < tonumber(t.e) then neweta = now end
              local set = {s=QUEUED, r=tostring(math.max(0, tonumber(t.r) - 1)), e=neweta, k=tostring(dead)}
              if t.c then set.c = '0' end
              update(t, set, nil, ttl)
            end
            out[#out + 1] = flatten(t)
          end
          if #out > 0 then changed() end
          return out
        end

        -- a: P, CH, id, now, result TTL, the exception of a revoked task. Returns {'notfound'}, {'cancel'}, {'already', status} or
        -- {'revoked', fields}.
        local function revoke(keys, a)
          setup(a)
          local t = load(a[3])
          if not t then return {'notfound'} end
          if WAITING[t.s] then
            update(t, {s=REVOKED, f=a[6], te=a[4]}, nil, a[5])
            changed()
            return {'revoked', flatten(t)}
          elseif t.s == STARTED then
            redis.call('HSET', tkey(t.id), 'c', '1')
            changed()
            return {'cancel'}
          end
          return {'already', t.s}
        end

        -- a: P, CH, now. Returns per queue: name, queued, delayed, retry, started.
        local function queueSizes(keys, a)
          setup(a)
          local now = a[3]
          local nnow = tonumber(now)
          local sizes = {}
          local function get(q)
            if not sizes[q] then sizes[q] = {0, 0, 0, 0} end
            return sizes[q]
          end
          for _, wk in ipairs(redis.call('SMEMBERS', P .. 'waitkeys')) do
            local s = get(qname(wk))
            s[1] = s[1] + redis.call('ZCOUNT', wkey(wk), '-inf', now)
            s[2] = s[2] + redis.call('ZCOUNT', wkey(wk), '(' .. now, '+inf')
          end
          local r = redis.call('ZRANGE', P .. 'retrying', 0, -1, 'WITHSCORES')
          for x = 1, #r, 2 do
            local f = redis.call('HMGET', tkey(r[x]), 's', 'wk')
            if f[1] == RETRY then
              local s = get(qname(f[2]))
              if tonumber(r[x + 1]) <= nnow then s[1] = s[1] - 1 else s[2] = s[2] - 1 end
              s[3] = s[3] + 1
            end
          end
          for _, id in ipairs(redis.call('ZRANGE', P .. 'leases', 0, -1)) do
            local f = redis.call('HMGET', tkey(id), 's', 'wk')
            if f[1] == STARTED then
              local s = get(qname(f[2]))
              s[4] = s[4] + 1
            end
          end
          local out = {}
          for q, s in pairs(sizes) do
            out[#out + 1] = q
            for x = 1, 4 do out[#out + 1] = s[x] end
          end
          return out
        end

        -- a: P, CH, queues (set), jobs (set). Returns the earliest eta as text, or nil.
        local function nextDue(keys, a)
          setup(a)
          local queues, i = readset(a, 3)
          local jobs = readset(a, i)
          local best, bestText = nil, false
          for _, k in ipairs(waitkeys(queues, jobs)) do
            local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
            if r[2] and (best == nil or tonumber(r[2]) < best) then
              best = tonumber(r[2])
              bestText = r[2]
            end
          end
          return bestText
        end

        -- a: P, CH, holder, until, now, lease milliseconds. Takes or renews the scheduler lease;
        -- returns 1 when `holder` has it. The value is `until|holder`; the key also expires.
        local function acquireScheduler(keys, a)
          setup(a)
          local holder, untilT, now, ms = a[3], a[4], tonumber(a[5]), a[6]
          local current = redis.call('GET', P .. 'scheduler')
          if current ~= false then
            local bar = string.find(current, '|', 1, true)
            local curUntil, curHolder = tonumber(string.sub(current, 1, bar - 1)), string.sub(current, bar + 1)
            if curHolder ~= holder and curUntil > now then return 0 end
          end
          redis.call('SET', P .. 'scheduler', untilT .. '|' .. holder, 'PX', ms)
          return 1
        end

        -- a: P, CH, holder. Gives the lease up if `holder` has it.
        local function releaseScheduler(keys, a)
          setup(a)
          local current = redis.call('GET', P .. 'scheduler')
          if current ~= false then
            local bar = string.find(current, '|', 1, true)
            if string.sub(current, bar + 1) == a[3] then redis.call('DEL', P .. 'scheduler') end
          end
          return 1
        end

        -- a: P, CH, job, slot. Records `slot` as the job's last run unless one at or after it is;
        -- returns 1 when recorded (the caller then queues the run).
        local function claimPeriodicSlot(keys, a)
          setup(a)
          local job, slot = a[3], tonumber(a[4])
          local last = redis.call('HGET', P .. 'periodic', job)
          if last ~= false and tonumber(last) >= slot then return 0 end
          redis.call('HSET', P .. 'periodic', job, a[4])
          return 1
        end

        """#

    /// `[k1]=v1, [k2]=v2, …`: a Lua table keyed by status numbers.
    private static func luaTable<S: Sequence<TaskStatus>>(_ states: S, _ value: (TaskStatus) -> String) -> String {
        states.sorted { $0.rawValue < $1.rawValue }.map { "['\($0.rawValue)']=\(value($0))" }.joined(separator: ", ")
    }

    /// The functions, by the short names the store calls them with.
    static let functions = [
        "enqueue", "claim", "finish", "finishEnded", "renew", "recover", "revoke", "queueSizes", "nextDue",
        "acquireScheduler", "releaseScheduler", "claimPeriodicSlot",
    ]

    static var enqueue: String { library.function("enqueue") }
    static var claim: String { library.function("claim") }
    static var finish: String { library.function("finish") }
    static var finishEnded: String { library.function("finishEnded") }
    static var renew: String { library.function("renew") }
    static var recover: String { library.function("recover") }
    static var revoke: String { library.function("revoke") }
    static var queueSizes: String { library.function("queueSizes") }
    static var nextDue: String { library.function("nextDue") }
    static var acquireScheduler: String { library.function("acquireScheduler") }
    static var releaseScheduler: String { library.function("releaseScheduler") }
    static var claimPeriodicSlot: String { library.function("claimPeriodicSlot") }

    /// The library: named after a hash of its text, so hosts of different builds sharing one Redis
    /// each call their own functions.
    static let library: RedisFunctionLibrary = {
        let prefix = "pq" + fnv1a(body)
        let registrations = functions.map { "redis.register_function('\(prefix)_\($0)', \($0))" }.joined(
            separator: "\n")
        return RedisFunctionLibrary(name: prefix, body: body + registrations + "\n")
    }()

    private static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
