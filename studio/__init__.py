"""Dashboard support (outside the core): opening sample and uploaded datasets under
the data roots (``datasets``), session state, cached loaders and the sidebar (``ui``),
and the Plotly figures every page draws (``figures``)."""
