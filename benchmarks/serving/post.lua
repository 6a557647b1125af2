-- wrk script: POST the JSON body in the file named by BODY_FILE to the path in REQ_PATH.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.path = os.getenv("REQ_PATH") or "/v1/predict"
wrk.headers["Content-Type"] = "application/json"

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  -- one machine-readable line for run.py
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d errors_status=%d errors_connect=%d errors_timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
end
