"""radmi.commands"""
