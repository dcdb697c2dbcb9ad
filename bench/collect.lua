-- wrk script for bench/collect.py: POST /collect with a rotating mix of
-- distinct User-Agents and event bodies, every event with a fresh event_id.
--
--   wrk -t2 -c64 -d10s --latency -s bench/collect.lua http://127.0.0.1:PORT/collect -- UAS BODIES ORIGIN
--
-- UAS: one User-Agent per line. BODIES: one body template per line, its parts
-- separated by TAB; between two parts goes the last 12 hex digits of an
-- event_id: 2 for the wrk thread, 2 for the event's place in the batch and 8
-- for a per-thread request counter, so no two requests carry the same ids.
-- done() prints one line "JSON:{…}" with the counts and latency percentiles
-- (microseconds), and "OTHER:<status> <body>" for the first non-204 answers.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- per-thread state; the counters are globals so done() can read them with thread:get
sent_requests, sent_events, ok204, other, other_log, ua_start = 0, 0, 0, 0, "", 0

local heads, bodies, nevents = {}, {}, {}
local nu, nb, ui, bi, n = 0, 0, 0, 0, 0
local fmt, concat = string.format, table.concat

local function lines(path)
  local fh = assert(io.open(path, "rb"))
  local data = fh:read("*a")
  fh:close()
  local out = {}
  for line in data:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

function init(args)
  local me = fmt("%02x", tid or 0)
  -- the request line and headers up to Content-Length's value, one per User-Agent:
  -- cheaper per request than wrk.format, which formats every header every time
  local host = wrk.headers["Host"] or (wrk.host .. ":" .. wrk.port)
  for i, ua in ipairs(lines(args[1])) do
    heads[i] = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host ..
      "\r\nContent-Type: text/plain;charset=UTF-8\r\nOrigin: " .. args[3] ..
      "\r\nUser-Agent: " .. ua .. "\r\nContent-Length: "
  end
  for i, line in ipairs(lines(args[2])) do
    local parts = {}
    for p in (line .. "\t"):gmatch("([^\t]*)\t") do parts[#parts + 1] = p end
    -- fold the thread and batch-place digits into the part before each slot
    for k = 1, #parts - 1 do parts[k] = parts[k] .. me .. fmt("%02x", k - 1) end
    bodies[i] = parts
    nevents[i] = #parts - 1
  end
  nu, nb = #heads, #bodies
  -- threads start at different places so they do not send the same pairs
  ui = ((tid or 0) * 7919) % nu
  ua_start = ui
  bi = ((tid or 0) * 104729) % nb
end

function request()
  n = n + 1
  ui = ui + 1; if ui > nu then ui = 1 end
  bi = bi + 1; if bi > nb then bi = 1 end
  local parts = bodies[bi]
  local c = fmt("%08x", n % 4294967296)
  local body
  if #parts == 2 then
    body = parts[1] .. c .. parts[2]
  else
    local s = {}
    for k = 1, #parts - 1 do s[#s + 1] = parts[k]; s[#s + 1] = c end
    s[#s + 1] = parts[#parts]
    body = concat(s)
  end
  sent_requests = sent_requests + 1
  sent_events = sent_events + nevents[bi]
  return heads[ui] .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
  if status == 204 then
    ok204 = ok204 + 1
  else
    other = other + 1
    if other <= 3 then other_log = other_log .. "OTHER:" .. status .. " " .. (body or ""):sub(1, 300) .. "\n" end
  end
end

function done(summary, latency, requests)
  local t = {sent_requests = 0, sent_events = 0, ok204 = 0, other = 0}
  local log, spans = "", {}
  for _, th in ipairs(threads) do
    -- which User-Agents this thread used: from ua_start + 1, sent_requests of them, wrapping
    spans[#spans + 1] = fmt("[%d,%d]", th:get("ua_start") or 0, th:get("sent_requests") or 0)
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
    log = log .. (th:get("other_log") or "")
  end
  local e = summary.errors
  io.write(fmt(
    'JSON:{"duration_us":%d,"requests":%d,"bytes":%d,"ok204":%d,"other":%d,"sent_requests":%d,"sent_events":%d,"ua_spans":[%s],' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, summary.bytes, t.ok204, t.other, t.sent_requests, t.sent_events, concat(spans, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
  io.write(log)
end
