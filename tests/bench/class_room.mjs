// The class of `make bench`'s messaging part: COUNT people of one school in
// one class group (a teacher leading it, pupils in it), so that messaging's
// roster follower makes the group's room with COUNT members. Made the way a
// school makes them, through the JSON API as an operator; each member's
// bearer token is minted with `kreidectl token` from the install's signing
// key (KREIDE_JWT_KEYS_DIR and KREIDE_ISSUER from the environment), the
// teacher's first. Waits until the roster room exists with every member
// (GET /api/v1/rooms as the teacher), prints its id, and writes the tokens
// to TOKENS_FILE, one a line.
//
//   node class_room.mjs BASE OPERATOR_TOKEN SCHOOL_ID COUNT KREIDECTL TOKENS_FILE
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [base, token, schoolId, countArg, kreidectl, tokensFile] = process.argv.slice(2);
const count = Number(countArg);
if (!base || !token || !schoolId || !Number.isInteger(count) || count < 2 || !kreidectl || !tokensFile) {
  console.error('usage: node class_room.mjs BASE OPERATOR_TOKEN SCHOOL_ID COUNT KREIDECTL TOKENS_FILE');
  process.exit(2);
}

async function call(method, path, body, auth = `Bearer ${token}`) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { authorization: auth, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 201) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

// Tokens live an hour: a socket is closed when its token expires, and the
// rounds of a bench with many rounds take longer than kreidectl's default.
function mint(userId, role) {
  return execFileSync(kreidectl, ['token', '--school', `${schoolId}:${role}`, '--sub', userId, '--ttl', '3600'],
    { encoding: 'utf8' }).trim();
}

try {
  // A fresh suffix per run, so that a second class in the same school
  // (another bench run against the same install) never collides.
  const tag = randomBytes(3).toString('hex');
  const group = await call('POST', `/api/v1/schools/${schoolId}/groups`,
    { kind: 'CLASS', name: `Bench ${tag}`, school_year: '' });
  const people = [];
  for (let i = 0; i < count; i++) {
    const role = i === 0 ? 'teacher' : 'pupil';
    const user = await call('POST', '/api/v1/users', {
      username: `bench.${tag}.${String(i).padStart(3, '0')}`, given_name: 'Bench', family_name: `Nr${i}`,
      contexts: [{ school_id: schoolId, role: role.toUpperCase() }],
    });
    await call('POST', `/api/v1/groups/${group.id}/members`,
      { user_id: user.id, role: i === 0 ? 'LEADER' : 'MEMBER' });
    people.push({ id: user.id, role });
  }
  const tokens = people.map((p) => mint(p.id, p.role));

  // The roster follower makes the room from identity's events (or its
  // reconciliation); wait for it with every member.
  const deadline = Date.now() + 60000;
  let room;
  while (Date.now() < deadline) {
    const { rooms } = await call('GET', `/api/v1/rooms?school_id=${schoolId}&page.limit=200`, undefined, `Bearer ${tokens[0]}`);
    room = rooms.find((r) => r.kind === 'ROSTER' && r.group_id === group.id);
    if (room && room.member_count === count) break;
    room = undefined;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!room) throw new Error(`the roster room of group ${group.id} did not reach ${count} members within 60 s`);
  writeFileSync(tokensFile, `${tokens.join('\n')}\n`);
  process.stdout.write(`${room.id}\n`);
} catch (err) {
  console.error(`class_room: ${err.message}`);
  process.exit(1);
}
