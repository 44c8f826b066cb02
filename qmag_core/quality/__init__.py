"""The quality side: what q is made of and where in the face it is lost.

``baselines`` (model-free measures computed per image: sharpness, inter-eye distance),
``head`` (quality heads and QualityModel, loaded with every encoder that has one),
``utility`` and ``magface`` (training those heads), ``degrade`` (seeded crop- and
capture-level degradations) and ``explain`` (pixel-level quality maps).
"""
