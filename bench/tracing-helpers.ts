/** What the tracing benchmarks share: reading a child's answer, and the upstream + collector-sink process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The child's first answer line (a number or JSON); other lines (a V8 trace flag's output) are skipped. */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!/^(\d|\{|\[\{)/.test(line)) return;
      lines.removeAllListeners('line');
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}`)));
  });
}

/**
 * The upstream and the collector sink: one small process, so the bench process itself stays idle. The sink
 * keeps idle connections 60 s, as the OpenTelemetry Collector's HTTP receiver does by default (Node's 5 s,
 * the export interval, made every export a new connection).
 */
export async function startUpstreamAndSink(): Promise<{
  helpers: ChildProcess;
  upstreamPort: number;
  collector: string;
}> {
  const helpers = spawn(
    process.execPath,
    [
      '-e',
      `const http=require('http');
     const listen=(srv)=>new Promise((r)=>srv.listen(0,'127.0.0.1',()=>r(srv.address().port)));
     const up=http.createServer((q,s)=>{q.resume();s.end('ok')});
     const sink=http.createServer({keepAliveTimeout:60000},(q,s)=>{q.resume();q.on('end',()=>{s.writeHead(200,{'content-type':'application/x-protobuf'});s.end()})});
     Promise.all([listen(up),listen(sink)]).then((ports)=>console.log(ports.join(' ')));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [upstreamPort, sinkPort] = (await firstLine(helpers)).split(' ').map(Number);
  return { helpers, upstreamPort: upstreamPort!, collector: `http://127.0.0.1:${sinkPort}/v1/traces` };
}
