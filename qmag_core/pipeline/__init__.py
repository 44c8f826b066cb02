"""Photos to scores: the steps of the vision side run in order.

``embed`` (the local embedding engine: read, detect, choose the subject, align,
encode, cache by content), ``ray`` (the same steps as Ray Data stages, on one machine
or a cluster), ``compare`` (photos → every face, q, s, ŝ and a decision) and
``datasets`` (embedding .bin sets and IJB protocols).  This layer sits above the
encoders and the quality heads because it combines them.
"""
