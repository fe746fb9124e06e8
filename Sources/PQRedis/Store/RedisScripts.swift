/// The Lua scripts of ``RedisTaskStore``: every state change is one script, so it is atomic across
/// hosts, and records its event and publishes it in the same step.
///
/// Each script starts with ``library``. ARGV[1] is the key prefix (`<namespace>:`), ARGV[2] the
/// channel prefix (`<namespace>_`), ARGV[3] the number of events kept; a script's own arguments
/// start at ARGV[4].
///
/// Keys, under the prefix:
/// - `task:<id>`: the task, a hash of ``RedisRecordCoding`` fields plus `order`.
/// - `wait:<queue>\0<job>`: waiting (QUEUED, RETRY) tasks of one queue and job, a sorted set by eta
///   whose members are the 12-digit `order` then the id, so equal etas keep queue order.
/// - `waitkeys`: the set of `<queue>\0<job>` pairs that ever had a waiting task.
/// - `leases`: STARTED tasks by lease end; `running:<job>` the same per job, for `max_concurrency`
///   (only unexpired leases count, so a dead host holds no slot once its leases end).
/// - `overlap:<job>\0<kwargs>`: the active task of a `can_overlap = false` job with those kwargs.
/// - `all`: every task by `order` (listing); `ended`: finished tasks by end time (purge).
/// - `events`: a capped stream whose entry ids are `<seq>-0`; `eventseq` the last seq; `order` the
///   last order.
enum RedisScripts {
    /// FIELDS: the hash fields in the order of a row (``RedisRecordCoding/Field``).
    static let fields = "local FIELDS = {'" + RedisRecordCoding.Field.names.joined(separator: "', '") + "'}\n"

    /// The Lua index of `field` in a row (FIELDS order), written into the scripts as a constant.
    static func at(_ field: RedisRecordCoding.Field) -> Int { field.rawValue + 1 }

    /// A Lua function `name(x)` that renders the task JSON of DESIGN.md §5 from `x`, reading a
    /// field through `access` (a task table, `x.status`, or a row, `x[3]`). Both renderers come
    /// from this one template, so they cannot drift apart.
    static func renderer(_ name: String, _ access: (RedisRecordCoding.Field) -> String) -> String {
        typealias Field = RedisRecordCoding.Field
        func str(_ f: Field) -> String { "jstr(\(access(f)))" }
        func num(_ f: Field) -> String { "jnum(\(access(f)))" }
        let parts: [(String, String)] = [
            ("id", str(.id)), ("name", str(.name)), ("status", access(.status)),
            ("status_string", "'\"' .. NAMES[\(access(.status))] .. '\"'"), ("queue", str(.queue)),
            ("kwargs", "jraw(\(access(.kwargs)), '{}')"), ("result", "jraw(\(access(.result)), 'null')"),
            ("exception", str(.exception)), ("time_queued", num(.timeQueued)), ("time_started", num(.timeStarted)),
            ("time_ended", num(.timeEnded)), ("delay", num(.delay)), ("timeout", num(.timeout)),
            ("expiry", num(.expiry)), ("retry", access(.retry)), ("max_retries", access(.maxRetries)),
            ("from_task", str(.fromTask)), ("node", str(.node)), ("worker", str(.worker)), ("plugin", str(.plugin)),
            ("plugin_version", str(.pluginVersion)),
        ]
        let body = parts.enumerated().map { i, part in
            "'\(i == 0 ? "{" : ",")\"\(part.0)\":' .. \(part.1)"
        }.joined(separator: "\n    .. ")
        return "local function \(name)(x)\n  return \(body) .. '}'\nend\n"
    }

    static let library = fields + #"""
        local P = ARGV[1]
        local CH = ARGV[2]
        local MAXEV = ARGV[3]
        local NUL = '\0'
        local NAMES = {['1']='SUCCESS', ['2']='FAILURE', ['3']='REVOKED', ['4']='RETRY', ['5']='STARTED', ['6']='QUEUED'}
        local KINDS = {['1']='done', ['2']='done', ['3']='done', ['4']='retry', ['5']='started', ['6']='queued'}
        local WAITING = {['6']=true, ['4']=true}
        local READY = {['1']=true, ['2']=true, ['3']=true}
        local ACTIVE = {['6']=true, ['5']=true, ['4']=true}

        local function tkey(id) return P .. 'task:' .. id end
        local function load(id)
          local flat = redis.call('HGETALL', tkey(id))
          if #flat == 0 then return nil end
          local t = {}
          for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
          return t
        end
        local function flatten(t)
          local out = {}
          for k, v in pairs(t) do out[#out + 1] = k; out[#out + 1] = v end
          return out
        end
        local function jstr(s)
          if not s then return 'null' end
          -- Most strings need no escaping: one scan, no copy.
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
          -- JSON text as stored: trimmed only when it starts or ends with white space.
          if string.byte(s, 1) > 32 and string.byte(s, -1) > 32 then return s end
          local trimmed = string.match(s, '^[ \n\r\t]*(.-)[ \n\r\t]*$')
          if trimmed == '' then return empty end
          return trimmed
        end
        local function jnum(s) if not s then return 'null' end return s end

        """# + renderer("render") { "x.\($0.name)" } + renderer("renderRow") { "x[\(at($0))]" } + #"""
        local function emit(t)
          local kind = KINDS[t.status]
          local seq = redis.call('INCR', P .. 'eventseq')
          local json = render(t)
          redis.call('XADD', P .. 'events', 'MAXLEN', '~', MAXEV, seq .. '-0', 'k', kind, 'i', t.id, 's', t.status, 'j', json)
          redis.call('PUBLISH', CH .. 'task_' .. kind, '{"event":"' .. kind .. '","task":' .. json .. '}')
        end
        local function wkey(t) return P .. 'wait:' .. t.queue .. NUL .. t.name end
        local function member(t) return string.format('%012d', tonumber(t.order)) .. t.id end
        local function index(t, old)
          local id = t.id
          if WAITING[t.status] then
            redis.call('ZADD', wkey(t), t.eta, member(t))
            redis.call('SADD', P .. 'waitkeys', t.queue .. NUL .. t.name)
          elseif old and WAITING[old] then
            redis.call('ZREM', wkey(t), member(t))
          end
          if t.status == '5' then
            redis.call('ZADD', P .. 'leases', t.lease_expires, id)
            redis.call('ZADD', P .. 'running:' .. t.name, t.lease_expires, id)
          elseif old == '5' then
            redis.call('ZREM', P .. 'leases', id)
            redis.call('ZREM', P .. 'running:' .. t.name, id)
          end
          if READY[t.status] and not (old and READY[old]) then
            redis.call('ZADD', P .. 'ended', t.time_ended, id)
            if t.can_overlap == '0' then
              local okey = P .. 'overlap:' .. t.name .. NUL .. t.kwargs
              if redis.call('GET', okey) == id then redis.call('DEL', okey) end
            end
          end
        end
        -- Sets and deletes fields, keeps the indexes right, records the event of a state change.
        local function update(t, set, del)
          local old = t.status
          local args = {}
          for k, v in pairs(set) do t[k] = v; args[#args + 1] = k; args[#args + 1] = v end
          local key = tkey(t.id)
          if #args > 0 then redis.call('HSET', key, unpack(args)) end
          if del and #del > 0 then
            for _, k in ipairs(del) do t[k] = nil end
            redis.call('HDEL', key, unpack(del))
          end
          index(t, old)
          if old ~= t.status or t.status == '4' then emit(t) end
        end
        local function changed() redis.call('PUBLISH', CH .. 'changed', '') end
        -- One command for many members (ZADD/ZREM), in chunks that unpack can take.
        local function many(cmd, key, list)
          for s = 1, #list, 1000 do
            redis.call(cmd, key, unpack(list, s, math.min(#list, s + 999)))
          end
        end
        -- Records and publishes events of one kind: items are {id, status, json}. One INCRBY for all.
        local function emitmany(kind, items)
          if #items == 0 then return end
          local last = redis.call('INCRBY', P .. 'eventseq', #items)
          local seq = last - #items
          for _, e in ipairs(items) do
            seq = seq + 1
            redis.call('XADD', P .. 'events', 'MAXLEN', '~', MAXEV, seq .. '-0', 'k', kind, 'i', e[1], 's', e[2], 'j', e[3])
            redis.call('PUBLISH', CH .. 'task_' .. kind, '{"event":"' .. kind .. '","task":' .. e[3] .. '}')
          end
        end
        -- Reads an optional set: a count (-1 for none) then the names; returns the set and the next index.
        local function readset(i)
          local n = tonumber(ARGV[i]); i = i + 1
          if n < 0 then return nil, i end
          local set = {}
          for x = 1, n do set[ARGV[i]] = true; i = i + 1 end
          return set, i
        end
        local function waitkeys(queues, jobs)
          local keys = {}
          for _, wk in ipairs(redis.call('SMEMBERS', P .. 'waitkeys')) do
            local sep = string.find(wk, NUL, 1, true)
            local q = string.sub(wk, 1, sep - 1)
            local name = string.sub(wk, sep + 1)
            if (not queues or queues[q]) and (not jobs or jobs[name]) then keys[#keys + 1] = P .. 'wait:' .. wk end
          end
          return keys
        end

        """#

    /// ARGV: n, then per task its field count and fields. Returns per task 0 (queued) or the twin's fields.
    static let enqueue = RedisScript(
        library + #"""
        local n = tonumber(ARGV[4])
        local i = 5
        local tasks = {}
        for j = 1, n do
          local m = tonumber(ARGV[i]); i = i + 1
          local t = {}
          for x = 1, m do t[ARGV[i]] = ARGV[i + 1]; i = i + 2 end
          tasks[j] = t
        end
        local seen = {}
        for _, t in ipairs(tasks) do
          if seen[t.id] or redis.call('EXISTS', tkey(t.id)) == 1 then
            return redis.error_reply('DUPLICATE ' .. t.id)
          end
          seen[t.id] = true
        end
        local out = {}
        for j, t in ipairs(tasks) do
          local twin = nil
          local okey = nil
          if t.can_overlap == '0' then
            okey = P .. 'overlap:' .. t.name .. NUL .. t.kwargs
            local tid = redis.call('GET', okey)
            if tid then
              local other = load(tid)
              if other and ACTIVE[other.status] then twin = other end
            end
          end
          if twin then
            out[j] = flatten(twin)
          else
            if okey then redis.call('SET', okey, t.id) end
            t.order = tostring(redis.call('INCR', P .. 'order'))
            redis.call('HSET', tkey(t.id), unpack(flatten(t)))
            redis.call('ZADD', P .. 'all', t.order, t.id)
            index(t, nil)
            emit(t)
            out[j] = 0
          end
        end
        changed()
        return out
        """#)

    /// ARGV: now, lease end, worker, node, limit, queues (set), jobs (set). Returns the claimed
    /// tasks as rows (``RedisRecordCoding/record(row:)``).
    static let claim = RedisScript(
        library + #"""
        local now = ARGV[4]
        local nnow = tonumber(now)
        local lease = ARGV[5]
        local worker = ARGV[6]
        local node = ARGV[7]
        local limit = tonumber(ARGV[8])
        local queues, i = readset(9)
        local jobs = readset(i)
        local keys = waitkeys(queues, jobs)
        local claimed = {}
        local running = {}
        local fullkeys = {}
        local anyexpired = false
        local unwaited, leased, runs, started = {}, {}, {}, {}
        for pass = 1, 8 do
          local cands = {}
          for _, k in ipairs(keys) do
            if not fullkeys[k] then
              local r = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit - #claimed)
              for x = 1, #r, 2 do cands[#cands + 1] = {r[x], tonumber(r[x + 1]), k} end
            end
          end
          if #cands == 0 then break end
          table.sort(cands, function(a, b)
            if a[2] ~= b[2] then return a[2] < b[2] end
            return a[1] < b[1]
          end)
          local expired = 0
          for _, c in ipairs(cands) do
            if #claimed >= limit then break end
            if not fullkeys[c[3]] then
              -- The claimed task is read as a row (its fields in FIELDS order), changed in
              -- place, rendered and returned as it is: no table by field name is built.
              local id = string.sub(c[1], 13)
              local r = redis.call('HMGET', tkey(id), unpack(FIELDS))
              if not r[\#(at(.id))] or not WAITING[r[\#(at(.status))]] then
                redis.call('ZREM', c[3], c[1])
              elseif r[\#(at(.expiry))] and tonumber(r[\#(at(.expiry))]) < nnow then
                update(load(id), {status='3', exception='expired before it started', time_ended=now}, {'lease_expires'})
                expired = expired + 1
              else
                local name = r[\#(at(.name))]
                local ok = true
                if r[\#(at(.maxConcurrency))] then
                  local count = running[name]
                  if count == nil then count = redis.call('ZCOUNT', P .. 'running:' .. name, now, '+inf') end
                  if count >= tonumber(r[\#(at(.maxConcurrency))]) then
                    ok = false
                    fullkeys[c[3]] = true
                  else
                    running[name] = count + 1
                  end
                end
                if ok then
                  -- What update() would do, with the index writes and events of the whole
                  -- claim gathered into a few commands below.
                  local retry = tostring(tonumber(r[\#(at(.retry))]) + 1)
                  r[\#(at(.status))] = '5'; r[\#(at(.timeStarted))] = now; r[\#(at(.worker))] = worker; r[\#(at(.node))] = node
                  r[\#(at(.leaseExpires))] = lease; r[\#(at(.retry))] = retry; r[\#(at(.cancelRequested))] = '0'
                  local key = tkey(id)
                  redis.call('HSET', key, 'status', '5', 'time_started', now, 'worker', worker, 'node', node,
                    'lease_expires', lease, 'retry', retry, 'cancel_requested', '0')
                  if r[\#(at(.timeEnded))] then
                    r[\#(at(.timeEnded))] = false
                    redis.call('HDEL', key, 'time_ended')
                  end
                  local gone = unwaited[c[3]]
                  if not gone then gone = {}; unwaited[c[3]] = gone end
                  gone[#gone + 1] = c[1]
                  leased[#leased + 1] = lease; leased[#leased + 1] = id
                  local jobRuns = runs[name]
                  if not jobRuns then jobRuns = {}; runs[name] = jobRuns end
                  jobRuns[#jobRuns + 1] = lease; jobRuns[#jobRuns + 1] = id
                  started[#started + 1] = {id, '5', renderRow(r)}
                  claimed[#claimed + 1] = r
                end
              end
            end
          end
          if expired == 0 or #claimed >= limit then break end
          anyexpired = true
        end
        for k, members in pairs(unwaited) do many('ZREM', k, members) end
        if #leased > 0 then many('ZADD', P .. 'leases', leased) end
        for name, pairs_ in pairs(runs) do many('ZADD', P .. 'running:' .. name, pairs_) end
        emitmany('started', started)
        if anyexpired then changed() end
        return claimed
        """#)

    /// ARGV: n, then per outcome id, worker, kind, text, eta, time, plugin, plugin version (the
    /// generation that ran it; empty to keep the stored one). Returns per outcome the fields, or 0
    /// when skipped; with n negative (quiet: -n outcomes) only the number of outcomes applied.
    static let finish = RedisScript(
        library + #"""
        local n = tonumber(ARGV[4])
        local quiet = n < 0
        if quiet then n = -n end
        local applied = 0
        local out = {}
        local any = false
        for j = 1, n do
          local b = 5 + (j - 1) * 8
          local id, w, kind, text, eta, time = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
          local plugin, pver = ARGV[b + 6], ARGV[b + 7]
          local function ran(set)
            if plugin ~= '' then set.plugin = plugin; set.plugin_version = pver end
            return set
          end
          local t = load(id)
          if t and t.status == '5' and t.worker == w then
            if kind == 'success' then
              update(t, ran({status='1', result=text, time_ended=time, cancel_requested='0'}), {'exception', 'lease_expires'})
            elseif kind == 'failure' then
              update(t, ran({status='2', exception=text, time_ended=time, cancel_requested='0'}), {'lease_expires'})
            elseif kind == 'retry' then
              update(t, ran({status='4', exception=text, eta=eta, cancel_requested='0'}), {'lease_expires'})
            elseif kind == 'revoked' then
              update(t, ran({status='3', exception=text, time_ended=time, cancel_requested='0'}), {'lease_expires'})
            else
              local neweta = t.eta
              if tonumber(time) < tonumber(t.eta) then neweta = time end
              update(t, {status='6', retry=tostring(math.max(0, tonumber(t.retry) - 1)), eta=neweta,
                cancel_requested='0'}, {'lease_expires'})
            end
            if not quiet then out[j] = flatten(t) end
            applied = applied + 1
            any = true
          elseif not quiet then
            out[j] = 0
          end
        end
        if any then changed() end
        if quiet then return applied end
        return out
        """#)

    /// Ends tasks whose final record the host already knows (it claimed them and kept their
    /// record): the host sends the fields to set and delete and the event JSON, so the script
    /// reads two fields per task instead of the whole hash and renders nothing.
    ///
    /// ARGV: n, then per outcome id, worker, status (1, 2 or 3), job name, overlap key (`name\0kwargs`,
    /// or '' when the job may overlap), time ended, task JSON, the number of fields to set and
    /// their names and values, the number of fields to delete and their names. An outcome
    /// applies only to a task still STARTED by that worker. Returns the number applied.
    static let finishEnded = RedisScript(
        library + #"""
        local n = tonumber(ARGV[4])
        local i = 5
        local leases, ended, runs, done = {}, {}, {}, {}
        for j = 1, n do
          local id, w, st, name, okey, tend, json = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
          local nset = tonumber(ARGV[i + 7])
          local sets = {}
          for x = 1, nset * 2 do sets[x] = ARGV[i + 7 + x] end
          i = i + 8 + nset * 2
          local ndel = tonumber(ARGV[i])
          local dels = {}
          for x = 1, ndel do dels[x] = ARGV[i + x] end
          i = i + 1 + ndel
          local key = tkey(id)
          local f = redis.call('HMGET', key, 'status', 'worker')
          if f[1] == '5' and f[2] == w then
            redis.call('HSET', key, unpack(sets))
            if ndel > 0 then redis.call('HDEL', key, unpack(dels)) end
            leases[#leases + 1] = id
            local r = runs[name]
            if not r then r = {}; runs[name] = r end
            r[#r + 1] = id
            ended[#ended + 1] = tend; ended[#ended + 1] = id
            if okey ~= '' then
              local k = P .. 'overlap:' .. okey
              if redis.call('GET', k) == id then redis.call('DEL', k) end
            end
            done[#done + 1] = {id, st, json}
          end
        end
        if #done > 0 then
          many('ZREM', P .. 'leases', leases)
          for name, ids in pairs(runs) do many('ZREM', P .. 'running:' .. name, ids) end
          many('ZADD', P .. 'ended', ended)
          emitmany('done', done)
          changed()
        end
        return #done
        """#)

    /// ARGV: worker, lease end, ids... Returns the ids to cancel.
    static let renew = RedisScript(
        library + #"""
        local w = ARGV[4]
        local lease = ARGV[5]
        local cancel = {}
        for i = 6, #ARGV do
          local id = ARGV[i]
          local f = redis.call('HMGET', tkey(id), 'status', 'worker', 'cancel_requested', 'name')
          if f[1] == '5' and f[2] == w then
            redis.call('HSET', tkey(id), 'lease_expires', lease)
            redis.call('ZADD', P .. 'leases', lease, id)
            redis.call('ZADD', P .. 'running:' .. f[4], lease, id)
            if f[3] == '1' then cancel[#cancel + 1] = id end
          else
            cancel[#cancel + 1] = id
          end
        end
        return cancel
        """#)

    /// ARGV: mode (`expired` or `worker`), now, max dead runs, worker. Returns the changed tasks' fields.
    static let recover = RedisScript(
        library + #"""
        local mode = ARGV[4]
        local now = ARGV[5]
        local maxdead = tonumber(ARGV[6])
        local who = ARGV[7]
        local ids
        if mode == 'expired' then
          ids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, 10000)
        else
          ids = redis.call('ZRANGE', P .. 'leases', 0, -1)
        end
        local victims = {}
        for _, id in ipairs(ids) do
          local t = load(id)
          if not t or t.status ~= '5' then
            redis.call('ZREM', P .. 'leases', id)
          elseif mode == 'expired' or t.worker == who then
            victims[#victims + 1] = t
          end
        end
        table.sort(victims, function(a, b) return tonumber(a.eta) < tonumber(b.eta) end)
        local out = {}
        for _, t in ipairs(victims) do
          local w = t.worker or '?'
          local dead = tonumber(t.dead_runs or '0') + 1
          if t.cancel_requested == '1' then
            update(t, {status='3', exception='revoked; its host died while running it (' .. w .. ')', time_ended=now,
              dead_runs=tostring(dead), cancel_requested='0'}, {'lease_expires'})
          elseif dead >= maxdead then
            update(t, {status='2', exception='run cut short ' .. dead .. ' times by a host that died (last: ' .. w
              .. '); not retried', time_ended=now, dead_runs=tostring(dead), cancel_requested='0'}, {'lease_expires'})
          else
            local neweta = t.eta
            if tonumber(now) < tonumber(t.eta) then neweta = now end
            update(t, {status='6', retry=tostring(math.max(0, tonumber(t.retry) - 1)), eta=neweta,
              dead_runs=tostring(dead), cancel_requested='0'}, {'lease_expires'})
          end
          out[#out + 1] = flatten(t)
        end
        if #out > 0 then changed() end
        return out
        """#)

    /// ARGV: id, now. Returns `{'notfound'}`, `{'cancel'}`, `{'already', status}` or `{'revoked', fields}`.
    static let revoke = RedisScript(
        library + #"""
        local t = load(ARGV[4])
        if not t then return {'notfound'} end
        if WAITING[t.status] then
          update(t, {status='3', exception='revoked', time_ended=ARGV[5]}, {})
          changed()
          return {'revoked', flatten(t)}
        elseif t.status == '5' then
          redis.call('HSET', tkey(t.id), 'cancel_requested', '1')
          changed()
          return {'cancel'}
        end
        return {'already', t.status}
        """#)

    /// ARGV: status or '', job or '', limit. Returns the tasks' fields, newest first.
    static let list = RedisScript(
        library + #"""
        local status = ARGV[4]
        local job = ARGV[5]
        local limit = tonumber(ARGV[6])
        local out = {}
        if status == '5' then
          local found = {}
          for _, id in ipairs(redis.call('ZRANGE', P .. 'leases', 0, -1)) do
            local t = load(id)
            if t and t.status == '5' and (job == '' or t.name == job) then found[#found + 1] = t end
          end
          table.sort(found, function(a, b) return tonumber(a.order) > tonumber(b.order) end)
          for x = 1, math.min(limit, #found) do out[x] = flatten(found[x]) end
          return out
        end
        local start = 0
        while #out < limit do
          local ids = redis.call('ZREVRANGE', P .. 'all', start, start + 255)
          if #ids == 0 then break end
          for _, id in ipairs(ids) do
            local t = load(id)
            if t and (status == '' or t.status == status) and (job == '' or t.name == job) then
              out[#out + 1] = flatten(t)
              if #out >= limit then break end
            end
          end
          start = start + 256
        end
        return out
        """#)

    /// ARGV: now. Returns per queue: name, queued, delayed, retry, started.
    static let queueSizes = RedisScript(
        library + #"""
        local nnow = tonumber(ARGV[4])
        local sizes = {}
        local function get(q)
          if not sizes[q] then sizes[q] = {0, 0, 0, 0} end
          return sizes[q]
        end
        for _, wk in ipairs(redis.call('SMEMBERS', P .. 'waitkeys')) do
          local q = string.sub(wk, 1, string.find(wk, NUL, 1, true) - 1)
          local r = redis.call('ZRANGE', P .. 'wait:' .. wk, 0, -1, 'WITHSCORES')
          for x = 1, #r, 2 do
            local st = redis.call('HGET', tkey(string.sub(r[x], 13)), 'status')
            if st == '4' then get(q)[3] = get(q)[3] + 1
            elseif st == '6' then
              if tonumber(r[x + 1]) > nnow then get(q)[2] = get(q)[2] + 1 else get(q)[1] = get(q)[1] + 1 end
            end
          end
        end
        for _, id in ipairs(redis.call('ZRANGE', P .. 'leases', 0, -1)) do
          local f = redis.call('HMGET', tkey(id), 'status', 'queue')
          if f[1] == '5' then get(f[2])[4] = get(f[2])[4] + 1 end
        end
        local out = {}
        for q, s in pairs(sizes) do
          out[#out + 1] = q
          for x = 1, 4 do out[#out + 1] = s[x] end
        end
        return out
        """#)

    /// ARGV: queues (set), jobs (set). Returns the earliest eta as text, or nil.
    static let nextDue = RedisScript(
        library + #"""
        local queues, i = readset(4)
        local jobs = readset(i)
        local best = nil
        local bestText = false
        for _, k in ipairs(waitkeys(queues, jobs)) do
          local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
          if r[2] and (best == nil or tonumber(r[2]) < best) then
            best = tonumber(r[2])
            bestText = r[2]
          end
        end
        return bestText
        """#)

    /// ARGV: cut-off. Deletes up to 10,000 tasks that ended before it; returns how many.
    static let purge = RedisScript(
        library + #"""
        local ids = redis.call('ZRANGEBYSCORE', P .. 'ended', '-inf', '(' .. ARGV[4], 'LIMIT', 0, 10000)
        for _, id in ipairs(ids) do
          redis.call('DEL', tkey(id))
          redis.call('ZREM', P .. 'all', id)
          redis.call('ZREM', P .. 'ended', id)
        end
        if #ids > 0 then changed() end
        return #ids
        """#)
}

extension RedisScripts {
    /// ARGV: kind, JSON, payload key. Records an event that is not a task state change (plugin
    /// and worker events) and
    /// publishes it on its channel. Returns the event's seq.
    static let recordEvent = RedisScript(
        library + #"""
        local kind, json, what = ARGV[4], ARGV[5], ARGV[6]
        local seq = redis.call('INCR', P .. 'eventseq')
        redis.call('XADD', P .. 'events', 'MAXLEN', '~', MAXEV, seq .. '-0', 'k', kind, 'i', '', 's', '0', 'j', json)
        redis.call('PUBLISH', CH .. kind, '{"event":"' .. kind .. '","' .. what .. '":' .. json .. '}')
        changed()
        return seq
        """#)
}

extension RedisScripts {
    /// ARGV: worker, JSON, time. Keeps the host's latest status (`hosts` hash, `time|json`) and
    /// publishes it on `<ns>_host_status`.
    static let hostStatus = RedisScript(
        library + #"""
        redis.call('HSET', P .. 'hosts', ARGV[4], ARGV[6] .. '|' .. ARGV[5])
        redis.call('PUBLISH', CH .. 'host_status', ARGV[5])
        return 1
        """#)
}
