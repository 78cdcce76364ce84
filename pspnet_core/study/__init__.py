"""The whole paper in one batch: the notebook contract, notebook setup, planning and running the
notebooks, the index page, storing executed notebooks, and the reproduction report
(``pspnet-study``, ``python -m pspnet_core.study``)."""
