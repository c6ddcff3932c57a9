// The floors of the house (ARCHITECTURE.md): imports point down only. Each engine folder has a floor;
// a module may import its own folder and folders on lower floors, never a folder above or beside it.
// The renderer knows the engine only through engine/contract/.
const floors = [
  ['base'],
  ['contract'],
  ['io'],
  ['format'],
  ['image'],
  ['check', 'write'],
  ['repair', 'lab', 'salvage', 'strip', 'triage'],
  // Reports describe checks, repairs and salvages, so they sit above them.
  ['report'],
  ['service'],
  ['cli'],
];
const floorOf = new Map(floors.flatMap((names, i) => names.map((n) => [n, i])));
const forbidden = [];
for (const [name, level] of floorOf) {
  const notBelow = [...floorOf].filter(([other, l]) => other !== name && l >= level).map(([other]) => other);
  if (notBelow.length === 0) continue;
  forbidden.push({
    name: `floor-${name}`,
    comment: `engine/${name}/ may import only folders on lower floors (${notBelow.join(', ')} are not)`,
    severity: 'error',
    from: { path: `^engine/${name}/` },
    to: { path: `^engine/(${notBelow.join('|')})/` },
  });
}
forbidden.push(
  {
    name: 'renderer-through-contract',
    comment: 'the renderer knows the engine only through engine/contract/ (and the base types it names)',
    severity: 'error',
    from: { path: '^renderer/' },
    to: { path: '^engine/', pathNot: '^engine/(contract|base)/' },
  },
  {
    name: 'electron-through-service',
    comment: 'the Electron shell reaches the engine through engine/service/ (and the contract and base types)',
    severity: 'error',
    from: { path: '^electron/' },
    to: { path: '^engine/', pathNot: '^engine/(service|contract|base)/' },
  },
  {
    name: 'engine-is-pure',
    comment: 'the engine runs without Electron and without a DOM',
    severity: 'error',
    from: { path: '^engine/' },
    to: { path: '(^|/)node_modules/(electron|svelte)/' },
  },
  {
    name: 'no-engine-from-outside-in',
    comment: 'the engine never imports the shells or the tests',
    severity: 'error',
    from: { path: '^engine/' },
    to: { path: '^(electron|renderer|test|bench)/' },
  },
  {
    name: 'no-circular',
    comment: 'no module cycles in the engine (type-only imports excepted: they vanish at run time)',
    severity: 'error',
    from: { path: '^engine/' },
    to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
  },
);
module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.svelte'] },
    exclude: { path: '(^|/)(node_modules|dist|out)/' },
  },
};
