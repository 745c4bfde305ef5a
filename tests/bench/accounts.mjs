// Sign-in accounts for `make bench`, made the way a school makes them: an
// operator creates each pupil, issues an enrollment code, and the code sets
// the password (POST /api/v1/enroll). Prints the user names, one a line.
//
//   node accounts.mjs BASE OPERATOR_TOKEN SCHOOL_ID COUNT PASSWORD
//
// Many accounts, so that a login benchmark spreads its sign-ins over them
// instead of hammering one account's rows and counters. Two requests at a
// time (each enrollment hashes the password once).
const [base, token, schoolId, countArg, password] = process.argv.slice(2);
const count = Number(countArg);
if (!base || !token || !schoolId || !Number.isInteger(count) || count < 1 || !password) {
  console.error('usage: node accounts.mjs BASE OPERATOR_TOKEN SCHOOL_ID COUNT PASSWORD');
  process.exit(2);
}

async function post(path, body, auth = true) {
  const res = await fetch(new URL(path, base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 201) throw new Error(`${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function account(i) {
  const username = `bench.${String(i).padStart(4, '0')}`;
  const user = await post('/api/v1/users', {
    username, given_name: 'Bench', family_name: `Nr${i}`, contexts: [{ school_id: schoolId, role: 'PUPIL' }],
  });
  const { code } = await post(`/api/v1/users/${user.id}/codes`, { school_id: schoolId, purpose: 'ENROLLMENT' });
  await post('/api/v1/enroll', { username, code, password }, false);
  return username;
}

try {
  const names = [];
  for (let i = 0; i < count; i += 2) {
    const batch = [account(i)];
    if (i + 1 < count) batch.push(account(i + 1));
    names.push(...(await Promise.all(batch)));
  }
  process.stdout.write(`${names.join('\n')}\n`);
} catch (err) {
  console.error(`accounts: ${err.message}`);
  process.exit(1);
}
