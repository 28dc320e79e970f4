// An independent SQL Server client against the local TDS server: tedious (the
// driver under Node's `mssql`), as an application would use it. Run by
// testkit/tests/independent_clients.rs; prints one JSON line with what it saw.
//
//   node tedious-client.mjs <host> <port> <user> <password> <database> <ca.pem|-> <student>
//
// With a CA it logs in over TLS trusting that CA only; with "-" it asks for TLS
// and trusts only the system's CAs (the local CA is not among them: refused).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Connection, Request, TYPES } from 'tedious';

const [host, port, user, password, database, ca, student] = process.argv.slice(2);
const pageSql = readFileSync(
  fileURLToPath(new URL('../../../infra/sql/queries/assessments_page.sql', import.meta.url)),
  'utf8',
);

function connect() {
  const connection = new Connection({
    server: host,
    authentication: { type: 'default', options: { userName: user, password } },
    options: {
      port: Number(port),
      database,
      encrypt: true,
      trustServerCertificate: false,
      ...(ca === '-' ? {} : { cryptoCredentialsDetails: { ca: readFileSync(ca) } }),
      connectTimeout: 5000,
      requestTimeout: 5000,
      rowCollectionOnRequestCompletion: true,
    },
  });
  return new Promise((resolve, reject) => {
    connection.on('connect', (err) => (err ? reject(err) : resolve(connection)));
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
  out.page = rows.map((r) => ({
    assessmentId: String(r.assessment_id),
    studentId: r.student_id,
    administeredAt: r.administered_at instanceof Date ? r.administered_at.toISOString() : null,
  }));
  // A pool's reset between users (the RESETCONNECTION bit), then the session batch again.
  await run(connection, { sql: 'SET TEXTSIZE 1024' }, true);
  await reset(connection);
  out.afterReset = (await run(connection, { sql: 'SELECT 1' }, true)).length;
} catch (err) {
  out.error = { name: err?.name ?? null, code: err?.code ?? null, message: String(err?.message ?? err) };
} finally {
  connection?.close();
}
console.log(JSON.stringify(out));
