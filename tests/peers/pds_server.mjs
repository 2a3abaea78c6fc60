// A PLC directory (in memory) and a Bluesky PDS in one Node process, for plurcast's tests.
//
// Started by tests/peers/bluesky.py, which installs the packages into a cache outside the work
// tree and passes everything through the environment:
//   PLURCAST_PDS_MODULES      the node_modules directory holding @atproto/pds and @did-plc/server
//   PLURCAST_PDS_REQUEST_LOG  a file that gets one line "METHOD /path" per request to the PDS,
//                             written before the request is handled (tests count logins with it)
//   PDS_*                     the PDS's own settings (port, data directory, secrets, ...)
// The PLC listens on a port of its own choosing; PDS_DID_PLC_URL is set to it here.
// Prints one JSON line on stdout when both answer; exits 0 on SIGTERM/SIGINT after closing both.

import { appendFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const modules = process.env.PLURCAST_PDS_MODULES
const requestLog = process.env.PLURCAST_PDS_REQUEST_LOG
if (!modules || !requestLog) {
  console.error('PLURCAST_PDS_MODULES and PLURCAST_PDS_REQUEST_LOG must be set')
  process.exit(2)
}
// This script lives in the work tree, the packages in the cache: resolve them from there.
const require = createRequire(path.join(modules, '..', 'package.json'))
const { PDS, envToCfg, envToSecrets, readEnv } = await import(require.resolve('@atproto/pds'))
const { PlcServer, Database } = require('@did-plc/server')

const plc = PlcServer.create({ db: Database.mock(), port: 0 })
const plcServer = await plc.start()
const plcUrl = `http://localhost:${plcServer.address().port}`
process.env.PDS_DID_PLC_URL = plcUrl

const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
const pdsServer = await pds.start()
// An extra 'request' listener runs before express answers: the line is on disk before the
// client sees the response.
pdsServer.on('request', (req) => {
  appendFileSync(requestLog, `${req.method} ${req.url.split('?')[0]}\n`)
})

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  // Keep-alive connections from the test's clients must not hold the process open.
  setTimeout(() => process.exit(0), 3000).unref()
  await pds.destroy().catch((err) => console.error('pds.destroy:', err))
  await plc.destroy().catch((err) => console.error('plc.destroy:', err))
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

console.log(JSON.stringify({ pds: `http://localhost:${env.port}`, plc: plcUrl }))
