"""``mixsup view``: a local web viewer of a prediction folder's slides, maps and regions.
May import ``train``/``predict``'s layer and below; in practice ``evaluate``, ``slides``,
``render`` and ``storage``, and no torch."""
