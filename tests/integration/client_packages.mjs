// How the .mjs clients of the integration tests load the npm packages they drive: from the
// working directory (tests/clients, where tools/setup-test-clients.sh installs node_modules), not
// from this file's folder.
import {createRequire} from 'node:module';
import path from 'node:path';

export const requireFromClients = createRequire(path.join(process.cwd(), 'package.json'));

// What `load` returns (by default the package `name` itself); when it throws, says how to install
// the clients and exits 1.
export function loadClientPackage(name, load = (req) => req(name)) {
  try {
    return load(requireFromClients);
  } catch (e) {
    console.error(`cannot load the ${name} package from ${process.cwd()}/node_modules ` +
                  `(run tools/setup-test-clients.sh): ${e.message}`);
    process.exit(1);
  }
}
