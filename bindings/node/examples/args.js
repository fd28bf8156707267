'use strict';
// The examples' command line: --name value pairs, the rest positional.
module.exports = function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--') && i + 1 < argv.length) {
      const k = a.slice(2);
      if (opts[k] === undefined) opts[k] = argv[++i];
      else opts[k] = [].concat(opts[k], argv[++i]);
    } else {
      opts._.push(a);
    }
  }
  if (!opts.queue) {
    console.error('--queue Q is required');
    process.exit(2);
  }
  return opts;
};
