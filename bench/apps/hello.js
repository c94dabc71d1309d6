// The HTTP app of bench/run's cluster rows: answers every request with "hello\n"
// and its pid in an X-Pid header (bench/run counts the instances that answer).
// PORT (default 8000); HOST if set (plain node and orch's preload rows bind
// 127.0.0.1 themselves), else server.listen(port), as a cluster worker under
// PM2 or orch calls it.
const http = require("http");
const port = Number(process.env.PORT || 8000);
const headers = { "Content-Type": "text/plain", "Content-Length": 6, "X-Pid": String(process.pid) };
const server = http.createServer((req, res) => {
  res.writeHead(200, headers);
  res.end("hello\n");
});
if (process.env.HOST) server.listen(port, process.env.HOST);
else server.listen(port);
