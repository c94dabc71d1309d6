// An ordinary Node HTTP server: nothing in it knows about orch or cluster.
// Under exec_mode = "cluster" its listen() gets the socket from orch.
const http = require('http');
const port = +(process.env.PORT || 8000);
http.createServer((req, res) => {
  res.end(`hello from pid ${process.pid}\n`);
}).listen(port, '127.0.0.1');
