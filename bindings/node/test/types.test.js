'use strict';
// The TypeScript declarations compile against a real usage (test/types/
// usage.ts) with tsc --noEmit --strict. tsc comes from the Nest package's
// devDependencies (nest/node_modules, created by scripts/setup's npm ci);
// without it this test is skipped, and says so.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const tsc = path.join(__dirname, '..', 'nest', 'node_modules', 'typescript', 'bin', 'tsc');
const available = fs.existsSync(tsc);

test('index.d.ts and nest/index.d.ts type-check a usage file',
  { skip: available ? false : 'typescript is not installed (run npm ci in bindings/node/nest)' },
  () => {
    const r = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')],
      { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });
