// An independent SQL Server client against the local TDS server: tedious (the
// driver under Node's `mssql`), as an application would use it. Run by
// testkit/tests/independent_clients.rs; prints one JSON line with what it saw.
//
//   node tedious-client.mjs <host> <port> <user> <password> <database> <ca.pem|-|plain> <student>
//
// With a CA it logs in over TLS trusting that CA only; with "-" it asks for TLS
// and trusts only the system's CAs (the local CA is not among them: refused);
// with "plain" it does not ask for TLS (a server without it: a plaintext session).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Connection, Request, TYPES } from 'tedious';

const [host, port, user, password, database, ca, student] = process.argv.slice(2);
const pageSql = readFileSync(
  fileURLToPath(new URL('../../../infra/sql/queries/assessments_page.sql', import.meta.url)),
  'utf8',
);

function connect(pw = password) {
  const tls = ca === '-' ? {} : ca === 'plain' ? null : { cryptoCredentialsDetails: { ca: readFileSync(ca) } };
  const connection = new Connection({
    server: host,
    authentication: { type: 'default', options: { userName: user, password: pw } },
    options: {
      port: Number(port),
      database,
      encrypt: tls !== null,
      trustServerCertificate: false,
      ...(tls ?? {}),
      connectTimeout: 5000,
      requestTimeout: 5000,
      rowCollectionOnRequestCompletion: true,
    },
  });
  return new Promise((resolve, reject) => {
    // A login's ERROR token carries the number (18456); tedious's error only the text.
    connection.on('errorMessage', (token) => { connection.lastErrorNumber = token.number; });
    connection.on('connect', (err) => {
      if (err) err.number = connection.lastErrorNumber;
      return err ? reject(err) : resolve(connection);
    });
    connection.connect();
  });
}

// Runs a request; resolves with its rows as plain objects.
function run(connection, request, batch) {
  return new Promise((resolve, reject) => {
    const req = new Request(request.sql, (err, _count, rows) =>
      err ? reject(err) : resolve((rows ?? []).map((columns) =>
        Object.fromEntries(columns.map((c) => [c.metadata.colName, c.value]))))
    );
    for (const [name, type, value] of request.params ?? []) req.addParameter(name, type, value);
    if (batch) connection.execSqlBatch(req); else connection.execSql(req);
  });
}

const reset = (connection) =>
  new Promise((resolve, reject) => connection.reset((err) => (err ? reject(err) : resolve())));

const out = {};
let connection;
try {
  connection = await connect();
  out.connected = true;
  // mssql's pool validates each connection with this, sent as RPC (sp_executesql).
  out.validation = (await run(connection, { sql: 'SELECT 1;' }, false))[0];
  out.select1 = Object.values(out.validation)[0];
  out.batch = (await run(connection, { sql: 'SELECT 1 AS ok' }, true))[0];
  // The resolver's page query, with its parameters typed as tedious types them.
  const rows = await run(connection, {
    sql: pageSql,
    params: [
      ['P1', TYPES.Int, 4],
      ['P2', TYPES.NVarChar, student],
      ['P3', TYPES.NVarChar, null],
      ['P4', TYPES.Date, null],
      ['P5', TYPES.Date, null],
      ['P6', TYPES.DateTime2, null],
      ['P7', TYPES.BigInt, null],
    ],
  }, false);
  out.page = rows.map((r) => String(r.assessment_id));
  out.pageRows = rows.map((r) => ({
    assessmentId: String(r.assessment_id),
    studentId: r.student_id,
    administeredAt: r.administered_at instanceof Date ? r.administered_at.toISOString() : null,
  }));
  // A pool's reset between users (the RESETCONNECTION bit), then the session batch again.
  await run(connection, { sql: 'SET TEXTSIZE 1024' }, true);
  await reset(connection);
  out.afterReset = (await run(connection, { sql: 'SELECT 1 AS after_reset' }, true))[0].after_reset;
  out.second = (await run(connection, { sql: 'SELECT DB_NAME() AS db, @@SPID AS spid' }, false))[0].db;
  try {
    await run(connection, { sql: 'SELECT * FROM dbo.no_such_table' }, true);
    out.statementError = 'no error';
  } catch (err) {
    out.statementError = err?.number ?? String(err);
  }
  out.recovered = (await run(connection, { sql: 'SELECT 2 AS two' }, true))[0].two;
  connection.close();
  connection = undefined;
  try {
    (await connect('not-the-password')).close();
    out.wrongPassword = 'logged in';
  } catch (err) {
    out.wrongPassword = err?.number ?? String(err?.message ?? err);
  }
} catch (err) {
  out.error = { name: err?.name ?? null, code: err?.code ?? null, message: String(err?.message ?? err) };
} finally {
  connection?.close();
}
console.log(JSON.stringify(out));
