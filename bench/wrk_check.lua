-- OneCheck benchmark requests for wrk (https://github.com/wg/wrk), used by bench/run.py.
--
--   wrk -t2 -c64 -d20s -s bench/wrk_check.lua http://127.0.0.1:PORT -- MODE FILE KEY [BATCH]
--
-- MODE single: FILE has one POST /v1/checks body (JSON) per line; the lines are sent in turn.
-- MODE batch:  FILE has one subject (JSON) per line; BATCH of them make one POST /v1/checks/batch body.
-- MODE lines:  FILE has "PATH<TAB>BODY" per line (e.g. feedback), POSTed in turn.
-- KEY is the API key (Authorization: Bearer KEY). All requests are formatted once, in init().
-- Each thread starts at its own offset in the list. done() prints one line
--   BENCH_JSON {"requests":…,"duration_us":…,"errors":{…,"status":…},"latency_us":{"p50":…,…}}
-- where errors.status counts responses that are not 2xx or 3xx.

local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_count)
end

local prepared = {}
local count = 0
local position = 0

local function read_lines(file)
   local lines = {}
   for line in io.lines(file) do
      if #line > 0 then
         lines[#lines + 1] = line
      end
   end
   if #lines == 0 then
      error("no lines in " .. file)
   end
   return lines
end

function init(args)
   local mode, file, key = args[1], args[2], args[3]
   local batch = tonumber(args[4] or "1000")
   if mode == nil or file == nil or key == nil then
      error("usage: -- MODE FILE KEY [BATCH]")
   end
   local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }
   local lines = read_lines(file)
   if mode == "single" then
      for _, body in ipairs(lines) do
         prepared[#prepared + 1] = wrk.format("POST", "/v1/checks", headers, body)
      end
   elseif mode == "batch" then
      local number = 0
      for first = 1, #lines, batch do
         number = number + 1
         local last = math.min(first + batch - 1, #lines)
         local body = '{"item_code":"I07","business_ref":"BENCH-BATCH-' .. number
            .. '","operator":"bench-clerk-01","subjects":[' .. table.concat(lines, ",", first, last) .. "]}"
         prepared[#prepared + 1] = wrk.format("POST", "/v1/checks/batch", headers, body)
      end
   elseif mode == "lines" then
      for _, line in ipairs(lines) do
         local tab = string.find(line, "\t", 1, true)
         if tab == nil then
            error("expected PATH<TAB>BODY lines in " .. file)
         end
         prepared[#prepared + 1] = wrk.format("POST", string.sub(line, 1, tab - 1), headers, string.sub(line, tab + 1))
      end
   else
      error("unknown mode " .. tostring(mode))
   end
   count = #prepared
   position = (((thread_id or 1) - 1) * 7919) % count
end

function request()
   position = position + 1
   if position > count then
      position = 1
   end
   return prepared[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
   ))
end
