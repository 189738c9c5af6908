"""The bridge study (see experiment.py): bridge: when does the effective model follow a real generator?"""
