"""Theory views (issue 11): chain explorer, random path products, initialisation map, Jacobian spectrum.

No torch here: the chain and the path products are numpy (engine.theory.chain,
.paths); the map and the spectrum run `backprop-lab theory ... --json` in a child
process (background.TheoryProcess) and draw its JSON.
"""
