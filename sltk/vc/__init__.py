"""Non-parallel many-to-many accent conversion with a conditional normalizing flow
(``convert-accent``; PAPERS.md section 8: remap, warp, attend).

- :mod:`sltk.vc.accents`: the accents (espeak-ng voices), accent-specific phonemization
  (through :func:`sltk.tts.phonemize.phonemize`) and the phone vocabulary;
- :mod:`sltk.vc.data`: the synthetic multi-accent corpus (non-parallel train, held-apart
  judge data, a parallel evaluation set);
- :mod:`sltk.vc.flow`: the conditional flow (actnorm, invertible 1x1 mixing, affine
  couplings, optionally a conditional prior) and its conditioning encoder (with dilated
  context convolutions);
- :mod:`sltk.vc.convert`: remap (target phonemization, or a learned phoneme-to-phoneme
  model), warp (per-accent duration model, relative or absolute), attend (target frames to source latents);
- :mod:`sltk.vc.judges`: accent-ID and speaker-ID models;
- :mod:`sltk.vc.train`, :mod:`sltk.vc.evaluate`: training and the five-system evaluation.

Front end, aligner and vocoder are :mod:`sltk.tts`'s.
"""
