"""Sim adapters behind one registry: iRacing live, iRacing replay, our race simulator."""
