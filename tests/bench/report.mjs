// The tables, ratios and JSON files of `make bench`'s token, login and
// messaging parts, from the runs scripts/bench collected (one post_load or
// ws_load JSON object a line per run, one run per round).
//
//   node report.mjs token DIR OUT.json      DIR/{cc,rt}_{kreide,oidc_provider}.jsonl
//   node report.mjs login DIR OUT.json      DIR/login.jsonl, DIR/floor.txt
//   node report.mjs messaging DIR OUT.json  DIR/{room,rate}.{jsonl,cpu}, DIR/floor.txt (pgbench), DIR/idle.json
//
// Each figure is the median over the rounds (the rounds take the variants in
// turn, so a noisy neighbour slows all of them alike); latencies are those
// of the round with the median requests/s.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [kind, dir, out] = process.argv.slice(2);
if (!['token', 'login', 'messaging'].includes(kind) || !dir || !out) {
  console.error('usage: node report.mjs token|login|messaging DIR OUT.json');
  process.exit(2);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const runsOf = (file) => readFileSync(path.join(dir, file), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const fix = (x, d = 1) => Number(x.toFixed(d));
const pad = (v, n) => String(v).padStart(n);

// The median round of a variant, with what the rounds agree on.
function summarize(runs) {
  const rps = median(runs.map((r) => r.rps));
  const mid = runs.find((r) => r.rps === rps);
  const out = {
    requests_per_s: fix(rps),
    p50_ms: mid.p50_ms,
    p99_ms: mid.p99_ms,
    generator_cores: fix(median(runs.map((r) => r.generator_cpu_s / r.seconds)), 3),
    rounds: runs.map((r) => fix(r.rps)),
  };
  if (runs[0].server_cpu_s !== undefined && Object.keys(runs[0].cpu).length > 0) {
    out.grants_per_cpu_s = fix(median(runs.map((r) => r.requests / r.server_cpu_s)));
    out.server_cores = fix(median(runs.map((r) => r.server_cpu_s / r.seconds)), 3);
    // Where the server side's CPU went in the median round, in percent.
    out.cpu_split_percent = Object.fromEntries(
      Object.entries(mid.cpu).map(([k, v]) => [k, fix((100 * v) / mid.server_cpu_s)]));
  }
  return out;
}

if (kind === 'token') {
  const names = ['cc_kreide', 'cc_oidc_provider', 'rt_kreide', 'rt_oidc_provider'];
  const v = Object.fromEntries(names.map((n) => [n, summarize(runsOf(`${n}.jsonl`))]));
  console.log(`\n${'variant'.padEnd(18)} ${pad('requests/s', 11)} ${pad('grants/CPU-s', 13)} ${pad('server cores', 13)} ${pad('load gen cores', 15)} ${pad('p50 ms', 8)} ${pad('p99 ms', 8)}`);
  for (const n of names) {
    const r = v[n];
    console.log(`${n.padEnd(18)} ${pad(r.requests_per_s, 11)} ${pad(r.grants_per_cpu_s, 13)} ${pad(r.server_cores, 13)} ${pad(r.generator_cores, 15)} ${pad(r.p50_ms, 8)} ${pad(r.p99_ms, 8)}`);
  }
  const ratios = {
    client_credentials_per_core: fix(v.cc_kreide.grants_per_cpu_s / v.cc_oidc_provider.grants_per_cpu_s, 3),
    refresh_token_per_core: fix(v.rt_kreide.grants_per_cpu_s / v.rt_oidc_provider.grants_per_cpu_s, 3),
    client_credentials_requests_per_s: fix(v.cc_kreide.requests_per_s / v.cc_oidc_provider.requests_per_s, 3),
    refresh_token_requests_per_s: fix(v.rt_kreide.requests_per_s / v.rt_oidc_provider.requests_per_s, 3),
  };
  console.log('');
  console.log(`client_credentials per core: Kreide / oidc-provider = ${ratios.client_credentials_per_core.toFixed(3)}   (goal >= 3.00)`);
  console.log(`refresh_token per core:      Kreide / oidc-provider = ${ratios.refresh_token_per_core.toFixed(3)}   (goal >= 3.00)`);
  console.log(`raw requests/s:              client_credentials ${ratios.client_credentials_requests_per_s.toFixed(3)}, refresh_token ${ratios.refresh_token_requests_per_s.toFixed(3)} (Kreide / oidc-provider)`);
  for (const n of ['cc_kreide', 'rt_kreide']) {
    const split = Object.entries(v[n].cpu_split_percent).map(([k, p]) => `${k} ${p}%`).join(', ');
    console.log(`${n} CPU split:`.padEnd(29) + split);
  }
  const doc = {
    name: 'oidc_token',
    tool: 'tests/bench/post_load (closed loop, one request in flight per connection)',
    inputs: {
      seconds_per_run: Number(process.env.BENCH_SECONDS || 5),
      rounds: Number(process.env.BENCH_ROUNDS || 3),
      connections: Number(process.env.BENCH_CONNS),
      peer: `oidc-provider ${JSON.parse(readFileSync(new URL('../node_modules/oidc-provider/package.json', import.meta.url))).version}, node ${process.version}`,
      cpu_counted: {
        kreide: 'gateway + identity + PostgreSQL (postmaster, all its children, exited children) + Redis',
        oidc_provider: 'its node process',
      },
    },
    variants: v,
    ratios,
    goals: { client_credentials_per_core: 3, refresh_token_per_core: 3 },
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
} else if (kind === 'messaging') {
  messaging();
} else {
  const login = summarize(runsOf('login.jsonl'));
  const loginRpc = summarize(runsOf('login_rpc.jsonl'));
  const floors = readFileSync(path.join(dir, 'floor.txt'), 'utf8').trim().split('\n').map((l) => {
    const m = /threads=(\d+): (\d+) hashes in [0-9.]+ s, CPU ([0-9.]+) s, hashes\/s ([0-9.]+)/.exec(l);
    if (!m) throw new Error(`floor line: ${l}`);
    return { threads: Number(m[1]), rate: Number(m[4]), perCpu: Number(m[2]) / Number(m[3]), line: l };
  });
  const floor = median(floors.map((f) => f.rate));
  const floorPerCpu = median(floors.map((f) => f.perCpu));
  const params = /m=(\d+) t=(\d+) p=(\d+)/.exec(floors[0].line);
  const ratio = fix(login.requests_per_s / floor, 3);
  const ratioRpc = fix(loginRpc.requests_per_s / floor, 3);
  const ratioCpu = fix(login.grants_per_cpu_s / floorPerCpu, 3);
  console.log(`\n${'variant'.padEnd(18)} ${pad('per second', 11)} ${pad('per CPU-s', 10)} ${pad('p50 ms', 8)} ${pad('p99 ms', 8)}`);
  console.log(`${'login'.padEnd(18)} ${pad(login.requests_per_s, 11)} ${pad(login.grants_per_cpu_s, 10)} ${pad(login.p50_ms, 8)} ${pad(login.p99_ms, 8)}`);
  console.log(`${'login_rpc'.padEnd(18)} ${pad(loginRpc.requests_per_s, 11)} ${pad('', 10)} ${pad(loginRpc.p50_ms, 8)} ${pad(loginRpc.p99_ms, 8)}`);
  console.log(`${'argon2id floor'.padEnd(18)} ${pad(fix(floor), 11)} ${pad(fix(floorPerCpu), 10)}`);
  console.log(`\nlogins / argon2id floor = ${ratio.toFixed(3)}   (goal >= 0.90; argon2id m=${params[1]} t=${params[2]} p=${params[3]}, ${floors[0].threads} threads = identity's workers)`);
  console.log(`login_rpc / argon2id floor = ${ratioRpc.toFixed(3)}   (StartSession without the gateway)`);
  console.log(`per CPU-second: login / argon2id floor = ${ratioCpu.toFixed(3)}   (CPU of gateway, identity, PostgreSQL, Redis against the hashing threads)`);
  const split = Object.entries(login.cpu_split_percent).map(([k, p]) => `${k} ${p}%`).join(', ');
  console.log(`login CPU split: ${split}`);
  const doc = {
    name: 'login',
    tool: 'tests/bench/post_load against POST /oidc/login; tests/bench/session_load against StartSession; tests/bench/argon2_cost -j for the floor',
    inputs: {
      seconds_per_run: Number(process.env.BENCH_SECONDS || 5),
      rounds: Number(process.env.BENCH_ROUNDS || 3),
      connections: Number(process.env.BENCH_CONNS),
      identity_workers: floors[0].threads,
      argon2id: { memory_kib: Number(params[1]), iterations: Number(params[2]), lanes: Number(params[3]) },
    },
    variants: {
      login,
      login_rpc: loginRpc,
      argon2id_floor: { hashes_per_s: fix(floor, 2), hashes_per_cpu_s: fix(floorPerCpu, 2), rounds: floors.map((f) => f.rate) },
    },
    ratios: { logins_over_floor: ratio, login_rpc_over_floor: ratioRpc, logins_over_floor_per_cpu_s: ratioCpu },
    goals: { logins_over_floor: 0.9 },
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
}
console.log(`wrote ${out}`);

// The messaging part: the class room at full speed and at a fixed rate,
// the pgbench floor, and the idle sockets' memory.
function messaging() {
  const env = (k, d) => Number(process.env[k] || d);
  // The median round by `key`, and what the rounds were.
  const pick = (runs, key) => {
    const m = median(runs.map((r) => r[key]));
    return { mid: runs.find((r) => r[key] === m), rounds: runs.map((r) => r[key]) };
  };
  // Each run's CPU per message sent (the warm-up's too), in ms, of the
  // gateway, messaging and PostgreSQL: DIR/MODE.cpu has one line a run,
  // their clock ticks before and after it and the ticks per second.
  const withCpu = (file, runs) => {
    const lines = readFileSync(path.join(dir, file), 'utf8').trim().split('\n');
    return runs.map((r, i) => {
      const [g0, m0, p0, g1, m1, p1, hz] = lines[i].trim().split(/\s+/).map(Number);
      const per = (t) => fix((1000 * t) / hz / r.messages_total, 3);
      return { ...r, cpu_ms_per_message: { gateway: per(g1 - g0), messaging: per(m1 - m0), postgres: per(p1 - p0),
        generator: fix((1000 * r.generator_cpu_s) / r.messages_total, 3) } };
    });
  };
  const room = pick(withCpu('room.cpu', runsOf('room.jsonl')), 'sent_per_s');
  const rate = pick(withCpu('rate.cpu', runsOf('rate.jsonl')), 'p99_ms');
  const tps = (file) => {
    const v = readFileSync(path.join(dir, file), 'utf8').split('\n')
      .map((l) => /^tps = ([0-9.]+) \(without initial connection time\)/.exec(l)).filter(Boolean).map((m) => Number(m[1]));
    if (v.length === 0) throw new Error(`no tps line in ${file}`);
    return v;
  };
  const floors = tps('floor.txt');
  const floorsTables = tps('floor_tables.txt');
  const floor = median(floors);
  const floorTables = median(floorsTables);
  const idle = JSON.parse(readFileSync(path.join(dir, 'idle.json'), 'utf8'));
  const perConn = (idle.rss_after_kib - idle.rss_before_kib) / idle.idle.connected;

  const row = (r) => ({
    messages_per_s: r.sent_per_s, deliveries_per_s: r.delivered_per_s, p50_ms: r.p50_ms, p99_ms: r.p99_ms, max_ms: r.max_ms,
    http_p50_ms: r.http_p50_ms, http_p99_ms: r.http_p99_ms, sockets: r.sockets, senders: r.senders,
    target_rate: r.rate || undefined, seconds: r.seconds, generator_cores: r.generator_cores,
    checked: { missing: r.missing, duplicate: r.duplicate, out_of_order: r.out_of_order, gaps: r.gaps },
    cpu_ms_per_message: r.cpu_ms_per_message,
  });
  const v = { room: row(room.mid), rate: row(rate.mid) };
  v.room.rounds = room.rounds;
  v.rate.rounds_p99_ms = rate.rounds;
  const ratio = fix(v.room.messages_per_s / floor, 3);
  const ratioTables = fix(v.room.messages_per_s / floorTables, 3);
  const goals = { room_over_floor: 0.25, room_p99_ms: 100, rate_p99_ms: 20, kib_per_idle_socket: 10 };

  console.log(`\n${'variant'.padEnd(14)} ${pad('messages/s', 11)} ${pad('deliveries/s', 13)} ${pad('p50 ms', 8)} ${pad('p99 ms', 8)} ${pad('HTTP p99', 9)} ${pad('load gen cores', 15)}`);
  for (const [n, r] of Object.entries(v)) {
    console.log(`${n.padEnd(14)} ${pad(r.messages_per_s, 11)} ${pad(r.deliveries_per_s, 13)} ${pad(r.p50_ms, 8)} ${pad(r.p99_ms, 8)} ${pad(r.http_p99_ms, 9)} ${pad(r.generator_cores, 15)}`);
  }
  for (const [n, r] of Object.entries(v)) {
    const c = r.cpu_ms_per_message;
    console.log(`${''.padEnd(14)} CPU ms per message: gateway ${c.gateway}, messaging ${c.messaging}, PostgreSQL ${c.postgres}, load generator ${c.generator} (${n})`);
  }
  console.log(`${'floor'.padEnd(14)} ${pad(fix(floor), 11)}   (pgbench: one row per message)`);
  console.log(`${'floor_tables'.padEnd(14)} ${pad(fix(floorTables), 11)}   (pgbench: an events row and a messages row per message)`);
  const line = (label, text) => console.log(`${label.padEnd(28)}= ${text}`);
  console.log('');
  line('room / floor', `${ratio.toFixed(3)}   (goal >= ${goals.room_over_floor}; ${room.mid.sockets} sockets in one room, ${room.mid.senders} senders over HTTP; floor: ${env('BENCH_FLOOR_CLIENTS', 8)} pgbench clients)`);
  line('room / floor_tables', ratioTables.toFixed(3));
  line('room p99 send->deliver', `${v.room.p99_ms} ms   (goal < ${goals.room_p99_ms} ms)`);
  line(`rate p99 at ${rate.mid.rate}/s`, `${v.rate.p99_ms} ms   (goal < ${goals.rate_p99_ms} ms; reached ${v.rate.messages_per_s}/s)`);
  line('idle WebSockets', `${fix(perConn, 2)} KiB each   (goal < ${goals.kib_per_idle_socket} KiB; ${idle.idle.connected} sockets, gateway VmRSS ${idle.rss_before_kib} -> ${idle.rss_after_kib} KiB)`);
  const doc = {
    name: 'messaging',
    tool: 'tests/bench/ws_load (WebSockets at /api/v1/ws, sends over HTTP POST /api/v1/rooms/{id}/messages); pgbench for the floor',
    inputs: {
      seconds_per_run: env('BENCH_SECONDS', 5),
      rounds: env('BENCH_ROUNDS', 3),
      room_members: env('BENCH_ROOM_SIZE', 30),
      senders: env('BENCH_WS_SENDERS', 8),
      fixed_rate: env('BENCH_WS_RATE', 1000),
      floor_clients: env('BENCH_FLOOR_CLIENTS', 8),
      idle_sockets: idle.idle.sockets,
      floor: 'one transaction per message: one row into a table shaped like messaging.events and messaging.messages together',
      floor_tables: 'one transaction per message: a row into a copy of messaging.events and one into a copy of messaging.messages',
    },
    variants: {
      ...v,
      floor: { inserts_per_s: fix(floor), rounds: floors },
      floor_tables: { inserts_per_s: fix(floorTables), rounds: floorsTables },
      idle: { sockets: idle.idle.connected, connect_seconds: idle.idle.connect_seconds, gateway_rss_before_kib: idle.rss_before_kib,
        gateway_rss_after_kib: idle.rss_after_kib, kib_per_socket: fix(perConn, 2) },
    },
    gateway_peak_rss_kib: idle.peak_rss_kib,
    ratios: { room_over_floor: ratio, room_over_floor_tables: ratioTables },
    goals,
    within_goals: {
      room_over_floor: ratio >= goals.room_over_floor,
      room_p99_ms: v.room.p99_ms < goals.room_p99_ms,
      rate_p99_ms: v.rate.p99_ms < goals.rate_p99_ms,
      kib_per_idle_socket: perConn < goals.kib_per_idle_socket,
    },
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
}
